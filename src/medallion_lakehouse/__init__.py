"""medallion-lakehouse: a Bronze -> Silver -> Gold lakehouse for retail sales on Delta Lake."""

from medallion_lakehouse import native_memory

# Before any module loads delta-rs, which reads its allocator settings once (see the module).
native_memory.configure()

__version__ = "0.1.0"
