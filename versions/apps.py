"""The versions app: records a version after every configuration change, and a baseline after
`migrate` when there is none."""

from django.apps import AppConfig


class VersionsConfig(AppConfig):
    name = "versions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from versions import recording

        recording.connect(self)
