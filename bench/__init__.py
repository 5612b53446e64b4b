"""Benchmarks: each module measures one thing, reports it as a ratio against a baseline
measured in the same run, and writes its own section of docs/benchmarks.md.

Run them all with ``python -m bench.run_all``.
"""
