"""The package's public names, for the gateway."""

import athena_admin.identity as identity


def test_all_names_resolve() -> None:
    assert sorted(identity.__all__) == [
        "IdentityError",
        "InvalidToken",
        "ProviderUnavailable",
        "authenticate_bearer",
    ]
    for name in identity.__all__:
        assert getattr(identity, name) is not None


def test_both_errors_are_identity_errors() -> None:
    assert issubclass(identity.InvalidToken, identity.IdentityError)
    assert issubclass(identity.ProviderUnavailable, identity.IdentityError)
