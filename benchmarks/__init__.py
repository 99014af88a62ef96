"""Benchmarks: each ``bench_*.py`` module measures ratios against a baseline in the same run."""
