"""Speed and memory micro-benchmarks of the package's parts and of a training step (see benchmarks/README.md)."""
