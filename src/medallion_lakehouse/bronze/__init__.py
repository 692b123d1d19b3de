"""Bronze: raw records exactly as received, with lineage. Append-only and idempotent."""
