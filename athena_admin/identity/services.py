"""Writes for identity: provider clients on and off, their tokens, the signing key."""

from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from oidc_provider.models import Client, RSAKey, Token

from athena_admin.identity.models import ClientState


def rsa_key_ensure() -> tuple[RSAKey, bool]:
    """Return the provider's signing key, creating one if there is none (idempotent)."""
    # Two first runs at once could make two keys: harmless, JWKS publishes both.
    existing = RSAKey.objects.order_by("id").first()
    if existing is not None:
        return existing, False
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()
    return RSAKey.objects.create(key=pem), True


def tokens_prune_stale() -> int:
    """Delete provider tokens whose access and refresh use are both over; returns how many.

    The library never deletes a row, and keeps its tokens in plain text: a stale row is of
    no use to anyone but someone reading the table.
    """
    window = timedelta(seconds=settings.ATHENA_OIDC_PROVIDER_REFRESH_SECONDS)
    deleted, _ = Token.objects.filter(expires_at__lt=timezone.now() - window).delete()
    return deleted


def client_tokens_revoke(*, clients: QuerySet[Client]) -> int:
    """Delete every access token of these clients; returns how many."""
    deleted, _ = Token.objects.filter(client__in=clients).delete()
    return deleted


@transaction.atomic
def clients_set_active(*, clients: QuerySet[Client], active: bool) -> int:
    """Switch clients on or off; switching off revokes their tokens too."""
    for client in clients:
        ClientState.objects.update_or_create(client=client, defaults={"is_active": active})
    if not active:
        client_tokens_revoke(clients=clients)
    return len(clients)


def client_is_active(client: Client) -> bool:
    state = ClientState.objects.filter(client=client).first()
    return state is None or state.is_active
