"""An engine's counters: ints written by its thread, read by /health and /metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineStats:
    """Counters for /health; ints written by the engine thread (`cancelled`: by the loop),
    read anywhere."""

    tokens_generated: int = 0
    completed: int = 0
    cancelled: int = 0
    steps: int = 0
    # Sequences in the batch now, and summed over every step (their ratio to `steps` is the
    # mean batch size): read by /metrics.
    batch_size: int = 0
    batch_sequences: int = 0
    # Decoding requests moved between the solo path and the batch, each way.
    moved_to_batch: int = 0
    moved_to_solo: int = 0
