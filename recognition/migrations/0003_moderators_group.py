"""The Moderators group: view everything that learning produces, change sample labels and status.

Nothing over users, groups or deletion. Permissions are normally created after
all migrations run (post_migrate), so they are created here first.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Moderators"
PERMISSIONS = [
    ("recognition", "view_sample"),
    ("recognition", "change_sample"),
    ("recognition", "moderate_sample"),
    ("recognition", "view_prediction"),
    ("recognition", "view_correction"),
    ("training", "view_modelversion"),
    ("training", "view_trainingrun"),
]


def create_group(apps, schema_editor):
    for app_label in ("recognition", "training"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True  # create_permissions skips apps without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.set(
        [
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in PERMISSIONS
        ]
    )


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("recognition", "0002_initial"),
        ("training", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
