"""Real Binance spot 1h candles shipped with CryptIQ for the demo and tests (see PROVENANCE.md)."""
