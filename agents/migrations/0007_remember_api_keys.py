"""Remember that API keys existed on installs that already have some (GATEWAY_AUTH=auto keeps
auth on after the last key is deleted; agents.services.api_keys_remember does it from now on)."""

from django.db import migrations


def remember(apps, schema_editor):
    if apps.get_model("agents", "ApiKey").objects.exists():
        apps.get_model("agents", "ConfigVersion").objects.get_or_create(
            name="api_keys_seen", defaults={"version": 1}
        )


class Migration(migrations.Migration):
    dependencies = [("agents", "0006_agent_retry_on")]
    operations = [migrations.RunPython(remember, migrations.RunPython.noop)]
