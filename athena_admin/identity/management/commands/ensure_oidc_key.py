"""Create the OIDC provider's RSA signing key if there is none (safe to run at every setup)."""

from typing import Any

from django.core.management.base import BaseCommand

from athena_admin.identity.services import rsa_key_ensure


class Command(BaseCommand):
    help = "Create the RSA key Athena's OIDC provider signs ID tokens with, unless one exists."

    def handle(self, *args: Any, **options: Any) -> None:
        key, created = rsa_key_ensure()
        verb = "Created" if created else "Kept existing"
        self.stdout.write(f"{verb} OIDC signing key (kid {key.kid}).")
