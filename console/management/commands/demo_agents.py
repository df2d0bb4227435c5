"""`manage.py demo_agents`: serve the demo agents the default install routes to (agents/demo.py)."""

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.demo import DEMO_AGENTS, serve_demo_agents


class Command(BaseCommand):
    help = (
        "Serve the four demo agents (venta, cita, reserva, citas_ventas) on 8001-8004, the "
        "ports the seeded agent rows point at. Development only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--base-port",
            type=int,
            default=min(DEMO_AGENTS.values()),
            help="port of the first agent; the others follow (default 8001)",
        )

    def handle(self, *args: Any, host: str, base_port: int, **options: Any) -> None:
        ports = {key: base_port + offset for offset, key in enumerate(DEMO_AGENTS)}
        for key, port in ports.items():
            self.stdout.write(f"demo agent {key} on http://{host}:{port}/api/chat")
        self.stdout.flush()
        asyncio.run(serve_demo_agents(host, ports))
