"""Datasets and DataModules. Imports point one way: ``datamodules`` -> ``base``, ``clips``,
``smmnist`` -> ``digits``; ``prepare`` -> ``sources``. Only ``base`` and ``datamodules`` import
Lightning, and nothing here imports the rest of the package beyond ``errors`` and ``files``."""
