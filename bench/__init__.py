"""Evaluation and benchmark harness: `make eval`, `make load`, `make peers` (see README, Benchmarks)."""
