"""Floor 4: strategist and auditor reports, built from published tables and the ledger only."""
