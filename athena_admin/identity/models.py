"""Links from provider identities to users, and the on/off switch for provider clients."""

from django.conf import settings
from django.db import models
from oidc_provider.models import Client


class ExternalIdentity(models.Model):
    """A user as the external provider knows them: (issuer, sub) is stable, email is not."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, help_text="The provider's `sub` claim.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="identity_issuer_subject")
        ]
        verbose_name_plural = "external identities"

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class ClientState(models.Model):
    """Whether an Athena-provider client may get and use tokens (the library has no flag)."""

    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="athena_state")
    is_active = models.BooleanField(default=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.client} ({'active' if self.is_active else 'inactive'})"
