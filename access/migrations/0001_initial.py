"""ApiKey, moved here from the agents app with its tables (agents_apikey and its allowed-agents
table) and its admin history and permissions (the content type is relabelled)."""

import django.core.validators
from django.db import migrations, models


def relabel_content_type(apps, schema_editor):
    """Keep the admin's history of keys and the permissions granted on them."""
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="agents", model="apikey").update(app_label="access")


def relabel_content_type_back(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="access", model="apikey").update(app_label="agents")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("agents", "0008_apikey_moves_to_access"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "name",
                            models.CharField(
                                help_text="Who uses this key (n8n prod…).",
                                max_length=100,
                                unique=True,
                            ),
                        ),
                        (
                            "prefix",
                            models.CharField(
                                editable=False,
                                help_text="The key's first characters, to recognise it.",
                                max_length=16,
                            ),
                        ),
                        ("key_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        (
                            "enabled",
                            models.BooleanField(
                                default=True,
                                help_text="Untick to revoke: every worker refuses the key within 2 s.",
                            ),
                        ),
                        (
                            "requests_per_minute",
                            models.PositiveIntegerField(
                                blank=True,
                                help_text="Rate limit for this key; more requests get a 429 with Retry-After. Blank: the RATE_LIMIT_PER_MINUTE setting.",
                                null=True,
                                validators=[
                                    django.core.validators.MinValueValidator(
                                        1, message="Must be at least 1; raise it to 1 or more."
                                    ),
                                    django.core.validators.MaxValueValidator(
                                        1000000,
                                        message="Must be at most 1e+06; lower it to 1e+06 or less.",
                                    ),
                                ],
                            ),
                        ),
                        (
                            "last_used_at",
                            models.DateTimeField(
                                blank=True,
                                editable=False,
                                help_text="Updated about once a minute.",
                                null=True,
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "allowed_agents",
                            models.ManyToManyField(
                                blank=True,
                                help_text="Agents this key may reach. None selected: every agent. Others get a 403.",
                                related_name="api_keys",
                                to="agents.agent",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "API key",
                        "db_table": "agents_apikey",
                        "ordering": ["name"],
                    },
                ),
            ],
        ),
        migrations.RunPython(relabel_content_type, relabel_content_type_back),
    ]
