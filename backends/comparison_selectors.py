"""Reads for backend comparisons: what to compare, and what a run found."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch, QuerySet

from backends.models import ComparisonCall, ComparisonRun, ComparisonTarget, LLMBackend
from backends.selectors import chain_entries, fallback_graph, targets_for_entry

__all__ = [
    "Spread",
    "TargetSummary",
    "RunSummary",
    "headline",
    "run_summary",
    "runs",
    "targets_to_compare",
]


def _bare(upstream: str) -> str:
    # Ollama lists `llama3.2:latest` for an entry that says `llama3.2`: the same model.
    return upstream.removesuffix(":latest")


def targets_to_compare(entry: LLMBackend) -> list[dict[str, Any]]:
    """The entry's chain (disabled links too), then every entry with the same upstream model.

    Each concrete target once (kind, endpoint, upstream model), chain first; `in_chain` says
    which. Disabled entries are measured too: comparing before switching one on is the point.
    """
    graph = fallback_graph()
    chain = chain_entries(entry, enabled_only=False, graph=graph)
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()

    def add(node: LLMBackend, *, has_chain: bool, in_chain: bool) -> None:
        for target in targets_for_entry(node, has_chain=has_chain):
            key = (target["backend_type"], target["endpoint_url"], target["upstream_model"])
            if key not in seen:
                seen.add(key)
                found.append({**target, "in_chain": in_chain, "enabled": node.enabled})

    for node in chain:
        add(node, has_chain=len(chain) > 1, in_chain=True)
    upstreams = {_bare(t["upstream_model"]) for t in found}
    others = LLMBackend.objects.exclude(pk__in=[n.pk for n in chain]).order_by("model_name")
    for other in others:
        if _bare(other.resolved_upstream_model) in upstreams:
            add(other, has_chain=bool(graph.get(other.pk)), in_chain=False)
    return found


def runs(model_name: str | None = None) -> QuerySet[ComparisonRun]:
    """Past and current runs, newest first, optionally of one model."""
    found = ComparisonRun.objects.select_related("created_by")
    return found.filter(model_name=model_name) if model_name else found


@dataclass(frozen=True, slots=True)
class Spread:
    """One figure over a target's measured calls: every sample, and its spread."""

    samples: tuple[float, ...]

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.samples) if self.samples else None

    @property
    def stdev(self) -> float | None:
        return statistics.stdev(self.samples) if len(self.samples) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "median": self.median,
            "mean": self.mean,
            "min": self.low,
            "max": self.high,
            "stdev": self.stdev,
        }


@dataclass(frozen=True, slots=True)
class TargetSummary:
    target: ComparisonTarget
    calls: int  # measured calls sent (warm-up left out)
    ok: int
    errors: dict[str, int]  # error kind -> count
    ttft_ms: Spread
    decode_tokens_per_sec: Spread
    latency_ms: Spread
    median_latency_by_case: dict[str, float | None]

    @property
    def label(self) -> str:
        t = self.target
        return f"{t.backend_type} {t.endpoint_url} ({t.upstream_model})"

    @property
    def short_label(self) -> str:
        """Kind and host:port, for a chart's row."""
        t = self.target
        return f"{t.backend_type} {t.endpoint_url.split('://', 1)[-1]}"

    @property
    def measured(self) -> bool:
        return self.ok > 0


@dataclass(frozen=True, slots=True)
class RunSummary:
    run: ComparisonRun
    targets: list[TargetSummary]
    cases: list[str]
    fastest: TargetSummary | None = None
    metric: str = ""  # "decode_tokens_per_sec" or "latency_ms": what `fastest` is best at
    # Every other measured target with how many times slower it is than the fastest.
    ratios: list[tuple[TargetSummary, float]] = field(default_factory=list)


def _summarise(target: ComparisonTarget, cases: list[str]) -> TargetSummary:
    measured = [c for c in target.calls.all() if not c.warmup]
    ok = [c for c in measured if c.ok]

    def spread(name: str, calls: list[ComparisonCall]) -> Spread:
        values = (getattr(c, name) for c in calls)
        return Spread(tuple(v for v in values if v is not None))

    return TargetSummary(
        target=target,
        calls=len(measured),
        ok=len(ok),
        errors=dict(Counter(c.error_kind or "error" for c in measured if not c.ok)),
        ttft_ms=spread("ttft_ms", ok),
        decode_tokens_per_sec=spread("decode_tokens_per_sec", ok),
        latency_ms=spread("latency_ms", ok),
        median_latency_by_case={
            case: spread("latency_ms", [c for c in ok if c.case == case]).median for case in cases
        },
    )


def run_summary(run: ComparisonRun, cases: list[str]) -> RunSummary:
    """Each target's figures, and which is fastest by how much.

    Fastest means the highest median decode rate (tokens/s after the first): answers differ in
    length between backends, and the rate does not depend on it. When no target has a rate
    (every answer a single token), the lowest median end-to-end latency decides.
    """
    calls = ComparisonCall.objects.order_by("started_at", "pk")
    targets = run.targets.prefetch_related(Prefetch("calls", queryset=calls)).order_by("position")
    summaries = [_summarise(t, cases) for t in targets]
    rated = [s for s in summaries if s.decode_tokens_per_sec.median]
    if rated:
        ranked = sorted(rated, key=lambda s: -(s.decode_tokens_per_sec.median or 0.0))
        best = ranked[0].decode_tokens_per_sec.median or 1.0
        ratios = [(s, best / (s.decode_tokens_per_sec.median or best)) for s in ranked[1:]]
        return RunSummary(run, summaries, cases, ranked[0], "decode_tokens_per_sec", ratios)
    timed = [s for s in summaries if s.latency_ms.median]
    if timed:
        ranked = sorted(timed, key=lambda s: s.latency_ms.median or 0.0)
        best = ranked[0].latency_ms.median or 1.0
        ratios = [(s, (s.latency_ms.median or best) / best) for s in ranked[1:]]
        return RunSummary(run, summaries, cases, ranked[0], "latency_ms", ratios)
    return RunSummary(run, summaries, cases)


def headline(summary: RunSummary) -> str:
    """One sentence: which target is fastest, and by how much over the next one."""
    fastest = summary.fastest
    if fastest is None:
        return "No target answered: nothing to compare."
    if not summary.ratios:
        return f"Only {fastest.label} answered."
    runner_up, ratio = summary.ratios[0]
    if summary.metric == "decode_tokens_per_sec":
        a, b = fastest.decode_tokens_per_sec.median, runner_up.decode_tokens_per_sec.median
        figures = f"{a:.1f} vs {b:.1f} tokens/s, medians"
    else:
        a, b = fastest.latency_ms.median, runner_up.latency_ms.median
        figures = f"{a:.0f} vs {b:.0f} ms end to end, medians"
    return f"Fastest: {fastest.label}, {ratio:.2f}x {runner_up.label} ({figures})."
