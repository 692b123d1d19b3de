"""medallion-lakehouse: a Bronze -> Silver -> Gold lakehouse for retail sales on Delta Lake."""

__version__ = "0.1.0"
