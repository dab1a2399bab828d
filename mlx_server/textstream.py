"""Turn a request's token stream into text, cutting it before any stop sequence.

Stop sequences are matched on decoded text, not token ids, because a tokenizer may
split the same string differently in context. A suffix that could be the start of a
stop sequence is held back until the next tokens show whether it is one, so streamed
chunks never leak part of a stop sequence.
"""

from __future__ import annotations

from typing import Any


class StopScanner:
    """Find the first stop sequence across incrementally arriving text."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what is safe to emit (all of it before a stop, once found)."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        keep = self._longest_partial(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """Release held text at the end of generation (no stop sequence can finish now)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that is a proper prefix of a stop."""
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:length]):
                    best = length
                    break
        return best


class TextAssembler:
    """Detokenize one sequence incrementally and apply its stop sequences."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]) -> None:
        self._detokenizer = tokenizer.detokenizer
        self._detokenizer.reset()
        self._eos = set(tokenizer.eos_token_ids)
        self._scanner = StopScanner(stops)

    @property
    def stopped(self) -> bool:
        """Tell whether a stop sequence has been seen."""
        return self._scanner.stopped

    def add(self, tokens: list[int], final: bool) -> str:
        """Consume tokens (EOS is not text); return the newly emittable text."""
        for token in tokens:
            if token not in self._eos:
                self._detokenizer.add_token(token)
        if final:
            self._detokenizer.finalize()
        text = self._scanner.feed(self._detokenizer.last_segment)
        if final:
            text += self._scanner.flush()
        return text
