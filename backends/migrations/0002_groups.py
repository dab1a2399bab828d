"""Create the two operator groups with Django model permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER_PERMS = ["view_llmbackend", "view_fallbacklink", "view_requestsample"]
OPERATOR_PERMS = VIEWER_PERMS + [
    "add_llmbackend", "change_llmbackend", "delete_llmbackend",
    "add_fallbacklink", "change_fallbacklink", "delete_fallbacklink",
]
GROUPS = {"LLM viewers": VIEWER_PERMS, "LLM operators": OPERATOR_PERMS}


def create_groups(apps, schema_editor):
    # Permissions are normally made after all migrations run; make them now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("backends")
    original = getattr(app_config, "models_module", None)
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = original
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="backends", codename__in=codenames)
        )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [("backends", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length"),
                    ("contenttypes", "0002_remove_content_type_name")]
    operations = [migrations.RunPython(create_groups, remove_groups)]
