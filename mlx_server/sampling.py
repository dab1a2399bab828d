"""Per-sequence samplers, each with its own RNG key.

mlx-lm's `make_sampler` draws from MLX's global random state, so two seeded requests
in one batch would consume each other's randomness; mlx_lm.server avoids that by
draining the batch before a seeded request. Here every sequence carries its own key
and splits it once per step, so a seed reproduces the same tokens whatever else is
in the batch, and nobody waits.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import mlx.core as mx

from .compat_mlx_lm import apply_top_p


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of the sampler."""

    temperature: float
    top_p: float = 1.0
    seed: int | None = None


class SeededSampler:
    """Sample one token from log-probabilities with temperature, top-p and a private key."""

    def __init__(self, params: SamplingParams) -> None:
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self._key = mx.random.key(seed % (2**63))
        self._inverse_temperature = 1.0 / params.temperature
        self._top_p = params.top_p

    def __call__(self, logprobs: mx.array) -> mx.array:
        """Return the sampled token ids for a (1, vocab) row of log-probabilities."""
        # Splitting builds a lazy graph node; the batch evaluates it with the step.
        self._key, step_key = mx.random.split(self._key)
        if 0.0 < self._top_p < 1.0:
            logprobs = apply_top_p(logprobs, self._top_p)
        return mx.random.categorical(logprobs * self._inverse_temperature, key=step_key)


def make_sequence_sampler(params: SamplingParams) -> SeededSampler | None:
    """Return a sampler for one sequence, or None for greedy decoding.

    None lets the batch use its shared greedy sampler, which samples every greedy
    sequence in one argmax instead of one call per row.
    """
    if params.temperature == 0.0:
        return None
    return SeededSampler(params)
