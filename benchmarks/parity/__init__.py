"""Step-for-step checks of ours against the official SelfCon and MixCo code (see benchmarks/README.md)."""
