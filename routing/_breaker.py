"""A passive circuit breaker per target, fed by the outcomes of real calls.

Sized for homes with 1-3 targets per model: a few consecutive hard failures (refused, timeout,
5xx, broken protocol) open the circuit; the cool-down doubles with each further failure up to
a cap; after it, one trial call is let through (half-open) and its outcome closes or re-opens
the circuit. A 4xx or a slow-but-successful answer proves the target alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CircuitBreaker", "BreakerBoard"]


class CircuitBreaker:
    __slots__ = ("failures", "open_until", "trial_in_flight", "_board")

    def __init__(self, board: BreakerBoard) -> None:
        self._board = board
        self.failures = 0
        self.open_until = 0.0
        self.trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self.failures >= self._board.threshold

    def allow(self) -> bool:
        """Say whether a call may go to the target now; reserve the half-open trial if so."""
        if self.failures < self._board.threshold:
            return True
        if self._board.clock() < self.open_until or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def record_success(self) -> None:
        self.failures = 0
        self.trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self.trial_in_flight = False
        board = self._board
        if self.failures >= board.threshold:
            exponent = min(self.failures - board.threshold, 16)
            cooldown = min(board.max_cooldown, board.base_cooldown * (2**exponent))
            self.open_until = board.clock() + cooldown

    def record_neutral(self) -> None:
        """Release a trial without judging the target (cancelled call, 429)."""
        self.trial_in_flight = False


class BreakerBoard:
    """The breakers of one router, keyed by target."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        base_cooldown: float = 2.0,
        max_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("breaker threshold must be >= 1")
        self.threshold = threshold
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self._breakers: dict[tuple[str, str, str], CircuitBreaker] = {}

    def get(self, key: tuple[str, str, str]) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(self)
        return breaker
