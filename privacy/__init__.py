"""Floor 3: keys, pseudonymization, identity, DP plans and engine, accountant, ledger, audit."""
