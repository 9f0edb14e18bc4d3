"""The CPU-scale reproduction runs behind the numbers of README.md and docs/results.md (see benchmarks/README.md)."""
