"""The repository's documentation tools, outside the installed package: they turn finished runs
into the docs' prose and figures (``make docs-figures``, ``make reproduce``). Run from the
repository root as ``python -m tools.NAME``."""
