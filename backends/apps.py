from django.apps import AppConfig


class BackendsConfig(AppConfig):
    name = "backends"
    verbose_name = "LLM backends"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from backends import checks  # noqa: F401  (registers the system checks)
        from backends.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
