"""Write the registry as YAML (stdout, or a file with -o) so a setup can live in git."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from backends.registry_yaml import registry_to_yaml


class Command(BaseCommand):
    help = "Export every registry entry as YAML (no metrics, no ids, ordered by model name)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        text = registry_to_yaml()
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")
