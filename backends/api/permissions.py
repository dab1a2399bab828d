"""Django model permissions for the API, reads included."""

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request


class RegistryModelPermissions(permissions.DjangoModelPermissions):
    """Like DRF's, but reading needs the view permission too."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


def require(perm: str) -> type[permissions.BasePermission]:
    """A permission class that demands one Django permission, for views without a queryset."""

    class Required(permissions.BasePermission):
        def has_permission(self, request: Request, view: Any) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perm(perm))

    Required.__name__ = f"Require_{perm.replace('.', '_')}"
    return Required


class MayReadRegistry(permissions.BasePermission):
    """Whoever may read the registry through the API: the schema and its docs pages."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("backends.view_llmbackend"))
