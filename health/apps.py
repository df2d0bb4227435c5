"""The health app (no models)."""

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
