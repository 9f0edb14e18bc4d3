"""The device check on a lent GPU machine: pack, run, measure (see benchmarks/README.md)."""
