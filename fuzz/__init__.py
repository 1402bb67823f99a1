"""Fuzzing the sans-I/O parsers: coverage-guided targets (atheris) and the oracles they share
with the hypothesis tests in ``tests/fuzz``. See ``fuzz/run.sh`` and ``fuzz/README.md``."""
