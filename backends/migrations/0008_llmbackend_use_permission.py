"""The `use_llmbackend` permission (the gateway checks it), given to both operator groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ("LLM viewers", "LLM operators")


def grant_use(apps, schema_editor):
    # Permissions are normally made after all migrations run; make this one now so the
    # groups can be given it on an existing database (see 0002_groups).
    app_config = apps.get_app_config("backends")
    original = getattr(app_config, "models_module", None)
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = original
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    use = Permission.objects.get(content_type__app_label="backends", codename="use_llmbackend")
    for group in Group.objects.filter(name__in=GROUPS):
        group.permissions.add(use)


def revoke_use(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.filter(
        content_type__app_label="backends", codename="use_llmbackend"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("backends", "0007_comparisons")]

    operations = [
        migrations.AlterModelOptions(
            name="llmbackend",
            options={
                "ordering": ["model_name"],
                "permissions": [("use_llmbackend", "Can use the model through the gateway")],
                "verbose_name": "LLM backend",
            },
        ),
        migrations.RunPython(grant_use, revoke_use),
    ]
