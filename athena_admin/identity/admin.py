"""Admin for identity: linked provider identities, and provider clients with on/off actions."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from oidc_provider.admin import ClientAdmin
from oidc_provider.models import Client

from athena_admin.identity.models import ExternalIdentity
from athena_admin.identity.services import (
    client_is_active,
    client_tokens_revoke,
    clients_set_active,
)


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    list_display = ["subject", "issuer", "user", "last_login_at"]
    search_fields = ["subject", "user__username", "user__email"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at", "last_login_at"]


admin.site.unregister(Client)


@admin.register(Client)
class AthenaClientAdmin(ClientAdmin):
    """django-oidc-provider's client admin, plus switching clients off and revoking tokens.

    Services register here as confidential clients with a non-empty scope and use the
    client-credentials grant. The secret is stored (and shown) in plain text by the library.
    """

    list_display = [*ClientAdmin.list_display, "active"]
    actions = ["deactivate", "activate", "revoke_tokens"]

    @admin.display(boolean=True)
    def active(self, client: Client) -> bool:
        return client_is_active(client)

    @admin.action(description="Deactivate and revoke their tokens")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        count = clients_set_active(clients=queryset, active=False)
        self.message_user(request, f"Deactivated {count} client(s).", messages.SUCCESS)

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        count = clients_set_active(clients=queryset, active=True)
        self.message_user(request, f"Activated {count} client(s).", messages.SUCCESS)

    @admin.action(description="Revoke all their access tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[Client]) -> Any:
        count = client_tokens_revoke(clients=queryset)
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
