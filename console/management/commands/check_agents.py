"""`manage.py check_agents`: probe every agent (health URL, or a real chat message with --chat) in
parallel and print one line per agent, or JSON; the exit status tells monitoring what failed."""

import json
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from agents.models import Agent
from agents.secret_store import unreadable_secrets
from fleet.worker_state import fleet_status
from health.on_demand import agents_check_health, agents_send_test_message
from health.probes import OK
from runtime import AGENT_RELATIONS, drain_problems

EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2


class Command(BaseCommand):
    help = (
        "Check every agent (or --agent KEY) in parallel with the probes GET /health uses. "
        "Exit 0 when every enabled agent is healthy, 1 when one is not, 2 on a configuration "
        "problem (unknown agent, no agents, database unreachable, or, when every agent is "
        "healthy, an agent whose timeout_s + 10 s exceeds GATEWAY_DRAIN_S)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", action="append", metavar="KEY", help="repeatable")
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help=f"seconds per check (default HEALTH_CHECK_TIMEOUT_S, {settings.HEALTH_CHECK_TIMEOUT_S})",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
        parser.add_argument(
            "--chat",
            action="store_true",
            help="also send one sample message to each enabled agent and validate its reply",
        )

    def handle(self, *args: Any, agent: list[str] | None, timeout: float | None, **options: Any):
        if timeout is not None and not 0.1 <= timeout <= 60:
            raise CommandError(
                "--timeout must be between 0.1 and 60 seconds", returncode=EXIT_CONFIG
            )
        agents = self._agents(agent)
        health = {h.key: h for h in agents_check_health(agents, timeout_s=timeout)}
        chats = {}
        if options["chat"]:
            chats = {p.key: p for p in agents_send_test_message([a for a in agents if a.enabled])}
        rows = [self._row(a, health[a.key], chats.get(a.key)) for a in agents]
        self._add_endpoints(rows, health)
        healthy = all(row["healthy"] for row in rows)
        problems = drain_problems(agents) + _secret_problems(agents)
        if options["json"]:
            report = {"healthy": healthy, "agents": rows, "problems": problems}
            self.stdout.write(json.dumps(report, ensure_ascii=False))
        else:
            self._print_table(rows, with_chat=options["chat"])
        for problem in problems:
            self.stderr.write(f"problem: {problem}")
        # An unhealthy agent is the more urgent news (1); a configuration problem found while
        # every agent answers is a 2, like the ones found before checking.
        if not healthy:
            sys.exit(EXIT_UNHEALTHY)
        if problems:
            sys.exit(EXIT_CONFIG)

    def _agents(self, keys: list[str] | None) -> list[Agent]:
        try:
            queryset = Agent.objects.prefetch_related(*AGENT_RELATIONS).order_by("key")
            agents = list(queryset.filter(key__in=keys) if keys else queryset)
        except DatabaseError as exc:
            raise CommandError(f"database unreachable: {exc}", returncode=EXIT_CONFIG) from exc
        missing = sorted(set(keys or []) - {a.key for a in agents})
        if missing:
            raise CommandError(f"unknown agent(s): {', '.join(missing)}", returncode=EXIT_CONFIG)
        if not agents:
            raise CommandError("no agents configured", returncode=EXIT_CONFIG)
        return agents

    @staticmethod
    def _row(agent: Agent, health: Any, chat: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "key": agent.key,
            "enabled": agent.enabled,
            "url": agent.url,
            "status": health.status,
            "latency_ms": health.latency_ms,
            "detail": health.detail,
            "routing_names": sorted(r.name for r in agent.routing_names.all()),
            "failover": [step.target.key for step in agent.failover_steps.all()],
        }
        healthy = health.healthy
        if chat is not None:
            row["chat"] = {"ok": chat.ok, "latency_ms": chat.latency_ms,
                           "reply": chat.reply, "error": chat.error}  # fmt: skip
            healthy = healthy and chat.ok
        row["healthy"] = healthy
        return row

    @staticmethod
    def _add_endpoints(rows: list[dict[str, Any]], health: dict[str, Any]) -> None:
        """An agent pool's row gets `endpoints`: each one's probe, and whether a live serving
        process has it ejected."""
        fleet = fleet_status() if any(health[row["key"]].endpoints for row in rows) else {}
        for row in rows:
            endpoints = health[row["key"]].endpoints
            if not endpoints:
                continue
            view = fleet.get(row["key"])
            ejected = view.ejected if view is not None else set()
            row["endpoints"] = [
                {"url": e.url, "weight": e.weight, "enabled": e.enabled, "status": e.status,
                 "latency_ms": e.latency_ms, "detail": e.detail, "ejected": e.index in ejected}
                for e in endpoints
            ]  # fmt: skip

    def _print_table(self, rows: list[dict[str, Any]], *, with_chat: bool) -> None:
        header = ["KEY", "ENABLED", "URL", "STATUS", "LATENCY MS", "ROUTING NAMES"]
        if with_chat:
            header.append("CHAT")
        table = [header]
        for row in rows:
            latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.0f}"
            status = row["status"] + (f" ({row['detail']})" if row["detail"] else "")
            line = [row["key"], "yes" if row["enabled"] else "no", row["url"], status, latency,
                    ", ".join(row["routing_names"])]  # fmt: skip
            if with_chat:
                chat = row.get("chat")
                line.append("" if chat is None else ("ok" if chat["ok"] else chat["error"]))
            table.append(line)
            for endpoint in row.get("endpoints", ()):
                ejected = ", ejected" if endpoint["ejected"] else ""
                state = endpoint["status"] + (
                    f" ({endpoint['detail']})" if endpoint["detail"] else ""
                )
                table.append(["", "", f"  {endpoint['url']} (weight {endpoint['weight']})",
                              state + ejected, "", ""] + ([""] if with_chat else []))  # fmt: skip
        widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
        for line in table:
            text = "  ".join(
                str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)
            )
            style = (
                self.style.ERROR if line[3].split(" ")[0] not in (OK, "disabled", "STATUS") else str
            )
            self.stdout.write(style(text.rstrip()))


def _secret_problems(agents: list[Agent]) -> list[str]:
    """Secrets no configured key reads (named, never shown): those agents get them empty."""
    keys = {a.key for a in agents}
    return [
        f"agent {key}: {problem}"
        for key, problems in unreadable_secrets().items()
        if key in keys
        for problem in problems
    ]
