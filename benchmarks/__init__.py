"""The benchmark and reproduction scripts (not part of the installed package); see README.md here. Run each from the
repository root as ``python -m benchmarks.<folder>.<script>``."""
