"""The access app: connects the API key signals once Django is ready."""

from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from access import signals

        signals.connect()
