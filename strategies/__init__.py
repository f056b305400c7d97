"""The Strategy protocol, the built-ins and their registry (pure: candles and signals in, intents out)."""
