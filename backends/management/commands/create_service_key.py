"""Create an API key and print it once."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backends.services import service_key_create


class Command(BaseCommand):
    help = "Create an API key. Without --user it is a service key (routes and metrics only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'orchestrator'.")
        parser.add_argument("--user", help="Make a personal key acting as this user.")

    def handle(self, *args: Any, name: str, user: str | None, **options: Any) -> None:
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"No user named '{user}'.")
        _, raw = service_key_create(name=name, owner=owner)
        self.stdout.write(raw)
        self.stderr.write("Store this key now: only its hash is kept.")
