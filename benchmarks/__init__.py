"""Benchmarks: measured, not asserted. Run `python -m benchmarks.reconcile` from the repo root."""
