"""Create or update registry entries from a YAML file written by export_registry."""

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backends.registry_yaml import RegistryFileError, registry_apply


class Command(BaseCommand):
    help = (
        "Import a registry YAML file: create or update entries by model name in one "
        "transaction; nothing changes if any entry is invalid."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.add_argument(
            "--prune", action="store_true", help="delete entries that the file does not name"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = self._read(options["file"])
        try:
            plan = registry_apply(text, prune=options["prune"], dry_run=options["dry_run"])
        except RegistryFileError as exc:
            for problem in exc.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"{len(exc.problems)} problem(s) in {options['file']}; nothing was changed."
            ) from None
        for line in plan.lines():
            self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: {len(plan.create)} to create, {len(plan.update)} to update, "
                f"{len(plan.unchanged)} unchanged, {len(plan.delete)} to delete. "
                "Nothing was changed."
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Imported: {len(plan.create)} created, {len(plan.update)} updated, "
                    f"{len(plan.unchanged)} unchanged, {len(plan.delete)} deleted."
                )
            )

    def _read(self, name: str) -> str:
        if name == "-":
            return sys.stdin.read()
        try:
            return Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {name}: {exc}") from None
