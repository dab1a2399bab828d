"""Probe backends once from the shell and print what each probe saw."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backends.models import LLMBackend
from backends.probes import ProbeOutcome, probe_entries

_COLUMNS = ("model", "kind", "endpoint", "health", "latency ms", "present", "loaded", "error")


def _positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise CommandError(f"--timeout must be a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 300:
        raise CommandError(f"--timeout must be between 0 and 300 seconds, got {value!r}")
    return seconds


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _row(o: ProbeOutcome) -> tuple[str, ...]:
    latency = "" if o.observation.latency_ms is None else f"{o.observation.latency_ms:.0f}"
    error = o.observation.error or ""
    return (
        o.model_name, o.kind, o.endpoint_url, o.health, latency,
        _yes_no(o.model_present), _yes_no(o.model_loaded), error,
    )  # fmt: skip


class Command(BaseCommand):
    help = "Probe every enabled backend (or the named models) once and print a table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", help="Model names (default: every enabled one).")
        parser.add_argument("--timeout", help="Seconds per probe (ATHENA_PROBE_TIMEOUT_SECONDS).")

    def handle(self, *args: Any, models: list[str], timeout: str | None, **options: Any) -> None:
        seconds = None if timeout is None else _positive(timeout)
        entry_ids = None
        if models:
            found = dict(
                LLMBackend.objects.filter(model_name__in=models).values_list("model_name", "pk")
            )
            missing = [m for m in models if m not in found]
            if missing:
                raise CommandError(f"No backend configured for model '{missing[0]}'.")
            entry_ids = [found[m] for m in models]
        outcomes = probe_entries(entry_ids=entry_ids, timeout=seconds)
        if not outcomes:
            self.stdout.write("No enabled backends to probe.")
            return
        rows = [_COLUMNS, *(_row(o) for o in outcomes)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
        for n, row in enumerate(rows):
            self.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            if n == 0:
                self.stdout.write("  ".join("-" * w for w in widths))
        down = sum(o.health == "down" for o in outcomes)
        self.stdout.write(f"\n{len(outcomes)} probed, {down} down.")
