import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.demo import DEMO_AGENTS, serve_demo_agents


class Command(BaseCommand):
    help = "Serve the four demo agents (venta, cita, reserva, citas_ventas) on 8001-8004."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, host: str, **options: Any) -> None:
        for key, port in DEMO_AGENTS.items():
            self.stdout.write(f"demo agent {key} on http://{host}:{port}/api/chat")
        asyncio.run(serve_demo_agents(host, DEMO_AGENTS))
