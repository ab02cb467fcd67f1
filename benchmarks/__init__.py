"""Throughput benchmarks and the GPU check, run from the repository root as modules
(``python -m benchmarks.bench_model``), so they import each other and the test fixture writers
(``tests.helpers.fixtures``) by package name."""
