"""Converters from the official KTH and BAIR archives to the memory-mapped ``.npy`` arrays that the
DataModules read; ``python -m svg_lightning.data.prepare`` is their command line."""
