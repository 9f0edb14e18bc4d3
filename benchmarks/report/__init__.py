"""Render README.md's and docs/results.md's measured results from benchmarks/results/ (see benchmarks/README.md)."""
