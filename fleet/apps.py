"""The fleet app: follows configuration changes (`agents.services.config_changed`) in every
process."""

from typing import Any

from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "fleet"

    def ready(self) -> None:
        from agents.services import config_changed
        from fleet.sync import registry_sync

        def follow(*, name: str, **_: Any) -> None:
            registry_sync.changed(name)

        config_changed.connect(follow, weak=False, dispatch_uid="fleet-follows-config")
