"""ApiKey moved to the access app (access/migrations/0001_initial.py). Its tables stay where they
are: this changes the migration state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0007_remember_api_keys"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ApiKey")],
            database_operations=[],
        ),
    ]
