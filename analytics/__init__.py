"""Query engine and reports: DuckDB views over the store, and what is built on them."""
