"""Create the single route-version row, so concurrent first changes never race to create it."""

from django.db import migrations


def create_row(apps, schema_editor):
    RouteVersion = apps.get_model("routing", "RouteVersion")
    RouteVersion.objects.get_or_create(pk=1, defaults={"version": 0})


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]

    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
