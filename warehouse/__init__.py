"""Floor 2: the secure warehouse (SQLAlchemy 2; SQLite by default, PostgreSQL in production).

Only pseudonymized, generalized rows live here. Pseudonymized rows never leave it: the
DP engine reads them inside the secure zone and only DP aggregates come out.
"""
