"""Tools that are not measurements of training: the shipped CIFAR-10 subset's builder and the package's structure
metrics (see benchmarks/README.md)."""
