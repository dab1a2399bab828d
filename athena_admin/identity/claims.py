"""Claims in both directions: provider claims -> Athena groups, and Athena's own claims."""

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from oidc_provider.lib.claims import ScopeClaims

logger = logging.getLogger(__name__)


def claimed_groups(claims: Mapping[str, Any]) -> set[str]:
    """Return the provider group names in the configured claim (a list or one string)."""
    value = claims.get(settings.ATHENA_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {item for item in value if isinstance(item, str)}
    return set()


def mapped_groups(claims: Mapping[str, Any]) -> set[str]:
    """Return the Athena group names the claims map to."""
    mapping: dict[str, str] = settings.ATHENA_OIDC_GROUPS_MAP
    return {mapping[name] for name in claimed_groups(claims) if name in mapping}


@transaction.atomic
def groups_sync(*, user: Any, claims: Mapping[str, Any]) -> set[str]:
    """Make the user's managed groups exactly what the claims say; leave other groups alone.

    Runs at every login, so a group removed at the provider is removed here too. Staff status
    follows: with no mapped group the user cannot use the admin (superusers keep it).
    """
    managed = set(settings.ATHENA_OIDC_GROUPS_MAP.values())
    wanted = mapped_groups(claims)
    existing = {g.name: g for g in Group.objects.filter(name__in=managed)}
    for missing in wanted - existing.keys():
        logger.warning("ATHENA_OIDC_GROUPS_MAP names a group that does not exist: %s", missing)
    user.groups.remove(*[g for name, g in existing.items() if name not in wanted])
    user.groups.add(*[g for name, g in existing.items() if name in wanted])
    is_staff = bool(wanted & existing.keys()) or user.is_superuser
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
    return wanted & existing.keys()


# --- Athena as a provider (django-oidc-provider's OIDC_USERINFO / OIDC_EXTRA_SCOPE_CLAIMS) ---


def provider_userinfo(claims: dict[str, Any], user: AbstractBaseUser) -> dict[str, Any]:
    """Fill the standard claims Athena can vouch for."""
    if user is None:  # client-credentials tokens have no user
        return claims
    claims["preferred_username"] = user.get_username()
    claims["name"] = user.get_full_name() or user.get_username()  # type: ignore[attr-defined]
    claims["given_name"] = getattr(user, "first_name", "")
    claims["family_name"] = getattr(user, "last_name", "")
    claims["email"] = getattr(user, "email", "")
    # Athena never verifies addresses, so a relying party must not match accounts by them.
    claims["email_verified"] = False
    return claims


class GroupsScopeClaims(ScopeClaims):
    """The `groups` scope: the names of the user's Django groups."""

    info_groups = (_("Groups"), _("The groups you belong to in Athena."))

    def scope_groups(self) -> dict[str, Any]:
        if self.user is None:  # client-credentials tokens have no user
            return {}
        return {"groups": sorted(self.user.groups.values_list("name", flat=True))}
