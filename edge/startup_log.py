"""The one structured startup event: what this process serves, and no secrets."""

import logging

from django.conf import settings

from access.auth import auth_change_log, auth_state
from agents.secrets import secrets_key_derived
from gateway_project.conf import gateway_settings
from observability.tracing import tracing_summary
from runtime import registry

logger = logging.getLogger("gateway.startup")


def log_startup() -> None:
    snapshot = registry.snapshot
    auth_on, auth_reason = auth_state()
    auth_change_log.last = auth_on
    logger.info(
        "gateway started",
        extra={
            "event": "startup",
            "version": gateway_settings.version,
            "agents": {
                r.key: {"enabled": r.spec.enabled, "timeout_s": r.spec.timeout_s}
                for r in snapshot.agents.values()
            },
            "registry_version": snapshot.version,
            "cors_allow_all": settings.CORS_ALLOW_ALL_ORIGINS,
            "cors_origins": settings.CORS_ALLOWED_ORIGINS,
            "cors_credentials": settings.CORS_ALLOW_CREDENTIALS,
            "auth": "on" if auth_on else "off",
            "auth_reason": auth_reason,
            "debug": settings.DEBUG,
            "tracing": tracing_summary(),
        },
    )
    if secrets_key_derived():
        logger.warning(
            "GATEWAY_SECRETS_KEYS is not set: agents' secrets (header values, TLS client keys) "
            "are encrypted with a key derived from SECRET_KEY; changing SECRET_KEY makes them "
            "unreadable. Set GATEWAY_SECRETS_KEYS (README, rotating the secrets key).",
            extra={"event": "secrets_key_derived"},
        )
    unverified = sorted(r.key for r in snapshot.agents.values() if not r.spec.tls.verify)
    if unverified:
        logger.warning(
            "TLS verification is off for agents %s: anyone on the path can read and change "
            "their traffic",
            ", ".join(unverified),
            extra={"event": "tls_verify_off", "agents_tls_unverified": unverified},
        )
    unreadable = {
        r.key: list(r.spec.secrets_unreadable)
        for r in snapshot.agents.values()
        if r.spec.secrets_unreadable
    }
    if unreadable:
        logger.error(
            "agents with secrets no key in GATEWAY_SECRETS_KEYS can read (sent empty): %s",
            ", ".join(sorted(unreadable)),
            extra={"event": "secrets_unreadable", "secrets": unreadable},
        )
    if not auth_on and not settings.DEBUG:
        logger.warning(
            "no API key configured: anyone who can reach the gateway can call the agents",
            extra={"event": "auth_off"},
        )
