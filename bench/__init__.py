"""Benchmarks of ai-local-core (``python -m bench.run``); loopback only, bounded, never shipped."""
