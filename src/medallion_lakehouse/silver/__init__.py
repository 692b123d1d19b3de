"""Silver: typed, standardised, deduplicated sales plus their quarantine."""
