"""Orders and their state machine, venues (paper, ccxt, web3) and the ledger."""
