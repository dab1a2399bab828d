"""Fixtures of the backends suite: real comparison targets (tests/backends/comparison_targets.py)."""

from tests.backends.comparison_targets import (  # noqa: F401 - fixtures, found by name
    compared,
    comparison_queue,
    mlx,
    slow_upstream,
    tiny_model_path,
)
