"""Call samples, buffered in memory and shipped in batches to POST /api/metrics/samples.

Recording is an append to a bounded deque: nothing on the request path waits for the admin.
A background task (the router's, one per event loop, running ``run()``) ships batches; a batch that fails to send is kept (same sample ids, so the
admin's de-duplication makes re-sends harmless) and retried with a growing pause while new
samples keep filling the buffer, which drops its oldest when full and counts the drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = ["SampleShipper"]

logger = logging.getLogger("routing")

MAX_BATCH = 1000  # the contract's limit per POST


class SampleShipper:
    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        admin_url: str | None,
        service_key: str | None,
        max_buffer: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
        timeout: float = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._client = client
        self._url = f"{admin_url.rstrip('/')}/api/metrics/samples" if admin_url else None
        self._headers = {"Authorization": f"Bearer {service_key}"} if service_key else {}
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._batch_size = max(1, min(batch_size, MAX_BATCH))
        self._interval = interval
        self._timeout = httpx.Timeout(timeout)
        self._max_backoff = max_backoff
        self._pending: list[dict[str, Any]] | None = None  # a batch sent but not acknowledged
        self._wake = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer) + (len(self._pending) if self._pending else 0)

    def record(self, sample: dict[str, Any]) -> None:
        """Queue one sample; never blocks, never raises."""
        if self._url is None or self._closed:
            return
        buffer = self._buffer
        if len(buffer) == buffer.maxlen:
            self.dropped += 1
        buffer.append(sample)
        if len(buffer) >= self._batch_size:
            self._wake.set()

    async def run(self) -> None:
        """Ship batches every ``interval`` (sooner when a batch fills) until cancelled."""
        if self._url is None:
            await asyncio.Event().wait()  # nothing to ship: wait to be cancelled
        backoff = self._interval
        while not self._closed:
            # Why asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the event is set, and closing the router waits on this task's end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()
            self._wake.clear()
            try:
                sent = await self.flush()
            except Exception:  # a bug must not end shipping for the rest of the loop's life
                logger.exception("routing: shipping samples failed")
                sent = False
            backoff = self._interval if sent else min(self._max_backoff, backoff * 2)

    async def flush(self) -> bool:
        """Send everything buffered now; return False if the admin could not take it."""
        if self._url is None:
            return True
        while self._pending or self._buffer:
            if self._pending is None:
                n = min(self._batch_size, len(self._buffer))
                self._pending = [_finalize(self._buffer.popleft()) for _ in range(n)]
            if not await self._send(self._pending):
                return False
            self.sent += len(self._pending)
            self._pending = None
        return True

    async def _send(self, batch: list[dict[str, Any]]) -> bool:
        assert self._url is not None
        try:
            response = await self._client.post(
                self._url, json={"samples": batch}, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            logger.warning("routing: cannot send %d samples to the admin: %s", len(batch), exc)
            return False
        except RuntimeError:  # the client was closed under us
            return False
        if response.status_code < 300:
            return True
        if response.status_code == 429 or response.status_code >= 500:
            logger.warning(
                "routing: the admin answered HTTP %d to samples, retrying", response.status_code
            )
            return False
        # Any other 4xx will not change on a re-send (a bad key, a rejected body): drop it.
        logger.error(
            "routing: the admin rejected %d samples (HTTP %d): %s",
            len(batch),
            response.status_code,
            response.text[:200],
        )
        self.dropped += len(batch)
        return True

    async def aclose(self, *, final_flush_timeout: float = 2.0) -> None:
        """Stop taking samples and send what is left in one last, bounded flush.

        The caller stops the task running ``run()`` first.
        """
        if self._closed:
            return
        self._closed = True
        if self._url is not None and self.buffered:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), timeout=final_flush_timeout)


def _finalize(sample: dict[str, Any]) -> dict[str, Any]:
    """Give a sample its id and ISO time once, when first batched; re-sends reuse both."""
    started = sample["started_at"]
    if isinstance(started, float):
        stamp = datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")
        sample["started_at"] = stamp.replace("+00:00", "Z")
    # The id leads the dict, as in the contract's example. The contract has no `overload`
    # field: a call turned away at capacity ships as error_kind "overload", which the admin
    # keeps out of the target's request and error counts.
    shipped = {"id": str(uuid.uuid4()), **{k: v for k, v in sample.items() if k != "overload"}}
    if sample.get("overload"):
        shipped["error_kind"] = "overload"
    return shipped
