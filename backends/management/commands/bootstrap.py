"""Prepare a fresh install: first admin, a service key for local processes, a demo route."""

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from backends.models import LLMBackend, ServiceKey
from backends.services import backend_create, service_key_create

LOCAL_KEY_NAME = "local-processes"


class Command(BaseCommand):
    help = (
        "Create the first superuser (password printed once), a local service key and a demo route."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self._first_admin()
        self._local_service_key()
        self._demo_route()

    def _first_admin(self) -> None:
        users = get_user_model()
        existing = list(
            users.objects.filter(is_superuser=True, is_active=True)
            .order_by("pk")
            .values_list("username", flat=True)[:3]
        )
        if existing:
            # A second `make run`: the password was shown once, so say who and how to reset it.
            self.stdout.write(
                f"\n  Admin user already exists: {', '.join(existing)}\n"
                f"  Forgot the password? .venv/bin/python manage.py changepassword {existing[0]}\n"
            )
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "", password)
        self.stdout.write(
            self.style.WARNING(
                f"\n  Admin user created: admin / {password}\n"
                "  (shown once; change it in the admin)\n"
            )
        )

    def _local_service_key(self) -> None:
        """Give the gateway and routers on this machine a key, kept in a 0600 file."""
        path = settings.VAR_DIR / "service.key"
        if (
            path.exists()
            and ServiceKey.objects.filter(name=LOCAL_KEY_NAME, revoked_at=None).exists()
        ):
            return
        _, raw = service_key_create(name=LOCAL_KEY_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(raw)
        self.stdout.write(f"Service key for local processes written to {path}")

    def _demo_route(self) -> None:
        if LLMBackend.objects.exists():
            return
        backend_create(
            fields={
                "model_name": "tiny",
                "backend_type": "mlx",
                "endpoint_url": "http://127.0.0.1:11435",
                "upstream_model": "tiny-llama",
                # The tiny model's context is 2,048 tokens: the registry's default max_tokens
                # (2,048) would leave no room for the prompt on an OpenAI-protocol backend.
                "max_tokens": 256,
                "description": "Demo: a tiny random-weight model served by the local MLX server.",
            }
        )
        self.stdout.write("Demo route created: model 'tiny' -> MLX server on :11435")
