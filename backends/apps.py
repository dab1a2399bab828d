from django.apps import AppConfig


class BackendsConfig(AppConfig):
    name = "backends"
    verbose_name = "LLM backends"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from backends import checks  # noqa: F401  (registers the system checks)
        from backends.aggregates import register_sqlite
        from backends.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        # SQLite (the embedded default) lacks percentile_cont; the dashboard needs it.
        connection_created.connect(register_sqlite, dispatch_uid="athena-sqlite-percentile")
