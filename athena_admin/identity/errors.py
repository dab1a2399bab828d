"""The one exception hierarchy of identity: what a bearer token check can fail with."""


class IdentityError(Exception):
    """Base class: the message is safe to show to the caller."""


class InvalidToken(IdentityError):
    """The token is malformed, unknown, expired, revoked or for someone else (HTTP 401)."""


class ProviderUnavailable(IdentityError):
    """The OIDC provider did not answer in time or answered with an error (HTTP 503)."""
