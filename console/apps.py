"""The console app: admin pages and management commands."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
