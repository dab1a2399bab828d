"""Every exception routing raises, in one place.

    RoutingError
    ├── InvalidRequest          the caller's arguments cannot be sent; the message names the
    │                           field (also a ValueError)
    ├── ModelNotConfigured      no route exists for the model (also a LookupError)
    ├── RouteLookupError        the admin refused the look-up and no route is cached
    ├── RouterClosed            the router was used after aclose()
    ├── UpstreamError           one target failed; ``error_kind`` names how
    │   ├── UpstreamConnectError    refused, unreachable, DNS       (falls back)
    │   ├── UpstreamTimeout         connect/read/write/pool timeout, or no content within
    │   │                           the target's first-content deadline (falls back)
    │   ├── UpstreamProtocolError   anything else that went wrong reading the answer: bytes
    │   │                           that are not the protocol, JSON of the wrong shape or
    │   │                           type, a stream cut short or without its final chunk
    │   │                           (falls back)
    │   └── UpstreamStatusError     an HTTP error status; 429 and 5xx fall back, any other
    │                               4xx is the caller's error and is raised at once;
    │                               ``overloaded`` (429, or 503 with Retry-After): the
    │                               target is at capacity, not broken
    ├── AllTargetsFailed        every target of the chain failed or was skipped; its
    │                           ``failures`` are TargetFailure entries, one per target
    ├── StreamInterrupted       a stream failed after content was already yielded
    └── InternalError           a bug in routing itself; the original exception is its
                                ``__cause__`` (and is logged with its traceback)

The guarantee, by construction rather than by catching each case: whatever is raised while
a target is called (an httpx error, a KeyError/TypeError/ValueError from an answer of the
wrong shape, a bug in a backend kind) becomes an ``UpstreamError`` of that target, so the
router falls back as long as nothing was yielded and raises ``StreamInterrupted`` after;
whatever else is raised inside a call (the route look-up, the router's own code) becomes
``InternalError``. So ``except RoutingError`` catches everything a call can raise, except
cancellation (``asyncio.CancelledError``), which is passed on untouched. httpx's exceptions
never leave the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routing._types import Target

__all__ = [
    "AllTargetsFailed",
    "InternalError",
    "InvalidRequest",
    "ModelNotConfigured",
    "RouteLookupError",
    "RouterClosed",
    "RoutingError",
    "StreamInterrupted",
    "TargetFailure",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class RoutingError(Exception):
    """Base class of every error raised by routing."""


class InvalidRequest(RoutingError, ValueError):
    """The caller passed an argument routing cannot send."""


class InternalError(RoutingError):
    """A bug in routing: an exception no part of routing expected; ``__cause__`` is the original."""


class ModelNotConfigured(RoutingError, LookupError):
    """No route exists for the model."""

    def __init__(self, model: str, detail: str | None = None) -> None:
        self.model = model
        super().__init__(detail or f"No backend configured for model '{model}'")


class RouteLookupError(RoutingError):
    """The admin answered the route look-up with an error and nothing is cached."""


class RouterClosed(RoutingError):
    """The router was used after aclose()."""


class UpstreamError(RoutingError):
    """One target failed. ``retryable`` says whether the next target may be tried."""

    error_kind: str = "protocol"
    retryable: bool = True
    # At capacity (see UpstreamStatusError): neither the breaker nor the metrics count it
    # as the target's failure.
    overloaded: bool = False
    retry_after: float | None = None

    def __init__(self, message: str, *, target: Target | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.status_code: int | None = None

    def __str__(self) -> str:
        if self.target is None:
            return self.message
        t = self.target
        return f"{t.backend_type} {t.endpoint_url} ({t.upstream_model}): {self.message}"


class UpstreamConnectError(UpstreamError):
    """The target could not be reached."""

    error_kind = "connect"


class UpstreamTimeout(UpstreamError):
    """The target did not answer within its timeout."""

    error_kind = "timeout"


class UpstreamProtocolError(UpstreamError):
    """The target answered something that is not its protocol, or cut its answer short."""

    error_kind = "protocol"


class UpstreamStatusError(UpstreamError):
    """The target answered an HTTP error status; ``message`` is the backend's own text."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        target: Target | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}: {message}", target=target)
        self.status_code = status_code
        self.backend_message = message
        self.retry_after = retry_after
        # RFC 9110 15.5.20 / 15.6.4: a 429, or a 503 that says when to come back, is a
        # server at capacity (mlx_server's "at capacity"), which is no sign of a fault.
        self.overloaded = status_code == 429 or (status_code == 503 and retry_after is not None)
        # Why: 429 and 5xx describe the server's state, another target may succeed; any
        # other 4xx describes the request, which every target would reject alike.
        self.retryable = status_code == 429 or status_code >= 500
        self.error_kind = "http_5xx" if status_code >= 500 else "http_4xx"


@dataclass(frozen=True, slots=True)
class TargetFailure:
    """Why one target of a chain did not serve a call.

    ``kind`` is the UpstreamError's ``error_kind`` (``connect``, ``timeout``, ``protocol``,
    ``http_5xx``), ``http_429`` for a 429, ``overload`` for a 503 with Retry-After, or, for
    a target that was not called,
    ``circuit_open`` or ``unknown_backend`` (``error`` is then None).
    """

    target: Target
    kind: str
    reason: str
    error: UpstreamError | None = None

    @classmethod
    def from_error(cls, target: Target, error: UpstreamError) -> TargetFailure:
        if error.status_code == 429:
            kind = "http_429"
        elif error.overloaded:
            kind = "overload"
        else:
            kind = error.error_kind
        return cls(target, kind, error.message, error)


class AllTargetsFailed(RoutingError):
    """Every target of the model's chain failed; ``failures`` says why, target by target."""

    def __init__(self, model: str, failures: list[TargetFailure]) -> None:
        self.model = model
        self.failures = failures
        lines = [
            f"  {i}. {f.target.backend_type} {f.target.endpoint_url} "
            f"({f.target.upstream_model}): {f.reason}"
            for i, f in enumerate(failures, 1)
        ]
        super().__init__(
            f"all {len(failures)} targets failed for model '{model}':\n" + "\n".join(lines)
        )

    @property
    def overloaded(self) -> bool:
        """Whether every target failed only for being at capacity (a caller should retry)."""
        return bool(self.failures) and all(
            f.error is not None and f.error.overloaded for f in self.failures
        )

    @property
    def retry_after(self) -> float | None:
        """The soonest Retry-After any target gave, in seconds (None: none gave one)."""
        waits = [f.error.retry_after for f in self.failures if f.error is not None]
        known = [w for w in waits if w is not None]
        return min(known) if known else None


class StreamInterrupted(RoutingError):
    """A stream failed after content was yielded; it cannot fall back without repeating text."""

    def __init__(self, cause: UpstreamError, chars_sent: int) -> None:
        self.cause = cause
        self.chars_sent = chars_sent
        super().__init__(
            f"stream interrupted after {chars_sent} characters, no fallback possible: {cause}"
        )
