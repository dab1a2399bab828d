from django.apps import AppConfig


class IdentityConfig(AppConfig):
    default = True  # this module holds two configs; this one is the app's own
    name = "athena_admin.identity"
    label = "identity"
    verbose_name = "Identity"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing registers the system checks and the OpenAPI auth extensions.
        from athena_admin.identity import checks, schema  # noqa: F401


class ProviderConfig(AppConfig):
    """django-oidc-provider, pinned to the id type of its own migrations.

    Its AppConfig leaves default_auto_field unset, so under Athena's BigAutoField default
    `makemigrations --check` would want a migration inside the installed package.
    """

    default = False
    name = "oidc_provider"
    verbose_name = "OpenID Connect Provider"
    default_auto_field = "django.db.models.AutoField"
