"""SVG-LP, SVG-FP and the deterministic baseline (Denton & Fergus, ICML 2018), Lightning + Hydra."""

__version__ = "0.1.0"
