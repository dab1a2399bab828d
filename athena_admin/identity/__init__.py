"""Identity: admin SSO, API bearer tokens, Athena as an OIDC provider.

The public surface is below; the gateway calls `authenticate_bearer(token)`. Names resolve
lazily because this package is also a Django app, imported before models are ready.
"""

from typing import Any

__all__ = ["IdentityError", "InvalidToken", "ProviderUnavailable", "authenticate_bearer"]


def __getattr__(name: str) -> Any:
    if name == "authenticate_bearer":
        from athena_admin.identity.bearer import authenticate_bearer

        return authenticate_bearer
    if name in ("IdentityError", "InvalidToken", "ProviderUnavailable"):
        from athena_admin.identity import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
