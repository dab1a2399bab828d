"""API-key authentication for machine clients."""

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from backends.models import ServiceKey
from backends.services import looks_like_service_key, service_key_authenticate

# What a key without an owner may do: read routes and the registry, report metrics, and use
# the models through the gateway.
SERVICE_PERMISSIONS = frozenset(
    {"backends.view_llmbackend", "backends.add_requestsample", "backends.use_llmbackend"}
)


class ServicePrincipal:
    """The user-like identity of a service key: authenticated, with fixed permissions."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, name: str, permissions: frozenset[str] = SERVICE_PERMISSIONS) -> None:
        self.username = f"service:{name}"
        self.permissions = permissions

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return perm in self.permissions

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return all(self.has_perm(p) for p in perms)


def presented_key(request: Request) -> str | None:
    header = request.headers.get("X-API-Key")
    if header:
        return header.strip()
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and looks_like_service_key(credentials.strip()):
        return credentials.strip()
    return None


class ServiceKeyAuthentication(authentication.BaseAuthentication):
    """Accept `Authorization: Bearer athk_...` or `X-API-Key: athk_...`."""

    def authenticate(self, request: Request) -> tuple[Any, ServiceKey] | None:
        raw = presented_key(request)
        if raw is None:
            return None
        key = service_key_authenticate(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        if key.owner is not None:
            if not key.owner.is_active:
                raise exceptions.AuthenticationFailed("The key's owner is inactive.")
            return key.owner, key
        return ServicePrincipal(key.name), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="athena"'
