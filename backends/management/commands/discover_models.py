"""List the models a backend serves, which are in the registry, and optionally add the rest."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backends.discovery import (
    DiscoveryError,
    discover_models,
    discovered_entries_create,
    registered_names,
)


class Command(BaseCommand):
    help = (
        "Ask an Ollama, MLX or OpenAI-compatible endpoint which models it serves "
        "(Ollama: /api/tags; others: /v1/models)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="the backend's base URL, e.g. http://127.0.0.1:11434")
        parser.add_argument(
            "--type",
            choices=["ollama", "mlx", "openai"],
            help="the backend's kind (default: detect it)",
        )
        parser.add_argument(
            "--create", action="store_true", help="add an entry for each model not yet served"
        )
        parser.add_argument("--prefix", default="", help="prepend this to created model names")
        parser.add_argument(
            "--timeout", type=float, default=5.0, help="seconds per request (default 5)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            found = discover_models(
                options["url"],
                backend_type=options["type"],
                allowed_networks=settings.ATHENA_ALLOWED_BACKEND_NETWORKS,
                resolve_hosts=settings.ATHENA_RESOLVE_BACKEND_HOSTS,
                timeout=options["timeout"],
            )
        except DiscoveryError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{found.endpoint_url} ({found.backend_type}) serves {len(found.models)} model(s):"
        )
        for upstream, entries in registered_names(found).items():
            state = f"in registry as {', '.join(entries)}" if entries else "new"
            self.stdout.write(f"  {upstream}  [{state}]")
        if not options["create"]:
            return
        result = discovered_entries_create(found, prefix=options["prefix"])
        for name in result.created:
            self.stdout.write(self.style.SUCCESS(f"created {name}"))
        for line in result.skipped:
            self.stdout.write(f"skipped {line}")
        for line in result.failed:
            self.stderr.write(f"failed {line}")
        if result.failed:
            raise CommandError(f"{len(result.failed)} model(s) could not be added.")
