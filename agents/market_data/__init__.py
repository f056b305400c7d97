"""The market_data agent: candles, tickers and trades from files or live ccxt exchanges."""
