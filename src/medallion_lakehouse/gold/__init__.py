"""Gold: curated aggregates of silver/sales (per day; per day, product and store)."""
