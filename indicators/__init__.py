"""Pure technical analysis: batch (TA-Lib) and incremental indicators, candlestick patterns."""
