"""The `medallion` command line."""
