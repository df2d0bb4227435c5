"""The agents app: connects the configuration signals and registers the system checks."""

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import checks, signals

        signals.connect()
        checks.register_all()
