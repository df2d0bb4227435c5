"""Operational state, written by the gateway rather than edited: configuration versions (how
workers learn of a change), worker status rows, health results and breaker-reset commands."""

from django.db import models

from agents.models.configuration import Agent


class ConfigVersion(models.Model):
    """A counter per configuration kind, bumped on every change.

    Each worker process polls it (one indexed read per interval) to learn that its in-memory
    registry is stale; this works the same on SQLite and PostgreSQL and needs no extra service.
    """

    name = models.CharField(max_length=32, primary_key=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class WorkerStatus(models.Model):
    """What one serving process last published about its agents (breaker, in-flight calls,
    recent traffic, last health checks). Written by the process every few seconds; the admin
    reads the rows of live workers."""

    worker_id = models.CharField(max_length=200, unique=True)  # host:pid
    updated_at = models.DateTimeField()
    state = models.JSONField(default=dict)

    class Meta:
        verbose_name = "worker status"
        verbose_name_plural = "worker statuses"

    def __str__(self) -> str:
        return self.worker_id


class HealthResult(models.Model):
    """The last health check of an agent made from the admin or `manage.py check_agents`."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="health_result")
    status = models.CharField(max_length=32)
    latency_ms = models.FloatField(null=True, blank=True)
    checked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.agent.key}: {self.status}"


class BreakerReset(models.Model):
    """A request, from the admin, to close an agent's breaker in every serving process."""

    agent_key = models.CharField(max_length=64)
    requested_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"reset {self.agent_key} @ {self.requested_at:%Y-%m-%d %H:%M:%S}"
