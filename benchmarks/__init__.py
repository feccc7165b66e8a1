"""Reproducible benchmark conditions (YAML) and their in-process runner: `python -m benchmarks`."""

__all__: list[str] = []
