"""Halles benchmarks: ``python -m benchmarks.run`` (``make bench``); see docs/performance.md."""
