"""The gateway's bearer-token hook: identity's check, in the gateway's contract.

The gateway wants a principal, or None for "not a valid token" (401); any exception means
the token could not be checked now (503). ProviderUnavailable is left to propagate for that.
"""

from typing import Any

from athena_admin.identity.bearer import authenticate_bearer
from athena_admin.identity.errors import InvalidToken


def authenticate_gateway_bearer(token: str) -> Any | None:
    try:
        return authenticate_bearer(token)
    except InvalidToken:
        return None
