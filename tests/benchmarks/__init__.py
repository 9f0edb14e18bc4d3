"""Tests of the benchmark scripts. The scripts import their harness as a sibling module (``from harness import``),
which works when they run as scripts (``benchmarks/`` is then on the path); the tests load them from their files, so
``benchmarks/`` goes on the path here."""
import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
