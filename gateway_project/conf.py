"""The gateway's settings as one frozen, typed object, built once from Django settings
(gateway_project/settings.py reads the environment); every room reads `gateway_settings`.

Like `ninja/conf.py`: a `setting_changed` receiver rebuilds it so tests can use
`override_settings`.
"""

from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

import gateway_project


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    name: str
    version: str
    api_keys: tuple[str, ...]
    auth_mode: str  # auto, on, off
    agent_timeout_s: float
    drain_s: float  # GATEWAY_DRAIN_S: uvicorn's graceful-shutdown budget (runtime/drain_budget.py)
    agent_max_response_bytes: int
    agent_keepalive_connections: int
    endpoint_ejection_base_s: float  # an agent pool's outlier ejection, first length
    tenant_fair_share: float
    chat_max_body_bytes: int
    body_read_timeout_s: float
    header_read_timeout_s: float
    registry_poll_interval_s: float
    health_check_timeout_s: float
    log_message_preview: int
    rate_limit_per_minute: int
    rate_limit_storage_uri: str
    redis_url: str
    secrets_keys: tuple[str, ...]  # GATEWAY_SECRETS_KEYS; empty: derived from SECRET_KEY
    traces_exporter: str  # otlp, or none (tracing off)
    traces_endpoint: str  # the OTLP/HTTP traces URL
    traces_sampler: str  # OTEL_TRACES_SAMPLER's name, e.g. parentbased_traceidratio
    traces_sampler_arg: float  # the ratio of the *traceidratio samplers

    @property
    def user_agent(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def tracing_on(self) -> bool:
        return self.traces_exporter == "otlp"

    @classmethod
    def from_django(cls) -> "GatewaySettings":
        return cls(
            name=settings.GATEWAY_NAME,
            version=gateway_project.__version__,
            api_keys=tuple(settings.GATEWAY_API_KEYS),
            auth_mode=str(settings.GATEWAY_AUTH),
            agent_timeout_s=float(settings.AGENT_TIMEOUT),
            drain_s=float(settings.GATEWAY_DRAIN_S),
            agent_max_response_bytes=int(settings.AGENT_MAX_RESPONSE_BYTES),
            agent_keepalive_connections=int(settings.AGENT_KEEPALIVE_CONNECTIONS),
            endpoint_ejection_base_s=float(settings.ENDPOINT_EJECTION_BASE_S),
            tenant_fair_share=float(settings.TENANT_FAIR_SHARE),
            chat_max_body_bytes=int(settings.CHAT_MAX_BODY_BYTES),
            body_read_timeout_s=float(settings.BODY_READ_TIMEOUT_S),
            header_read_timeout_s=float(settings.HEADER_READ_TIMEOUT_S),
            registry_poll_interval_s=float(settings.REGISTRY_POLL_INTERVAL_S),
            health_check_timeout_s=float(settings.HEALTH_CHECK_TIMEOUT_S),
            log_message_preview=int(settings.LOG_MESSAGE_PREVIEW),
            rate_limit_per_minute=int(settings.RATE_LIMIT_PER_MINUTE),
            rate_limit_storage_uri=str(settings.RATE_LIMIT_STORAGE_URI),
            redis_url=str(settings.REDIS_URL),
            secrets_keys=tuple(settings.GATEWAY_SECRETS_KEYS),
            traces_exporter=str(settings.OTEL_TRACES_EXPORTER),
            traces_endpoint=str(settings.OTEL_TRACES_ENDPOINT),
            traces_sampler=str(settings.OTEL_TRACES_SAMPLER),
            traces_sampler_arg=float(settings.OTEL_TRACES_SAMPLER_ARG),
        )


class _SettingsProxy:
    """Attribute access to the current GatewaySettings; rebuilt when a test overrides settings.

    The fields are copied onto the proxy when first read, so reading one on the request path
    (several per request) is a plain attribute lookup rather than a `__getattr__` call.
    """

    def __getattr__(self, name: str) -> Any:
        # Reached on first use after a (re)load, and for GatewaySettings' properties.
        current = self.__dict__.get("_current")
        if current is None:
            current = GatewaySettings.from_django()
            self.__dict__.update({f.name: getattr(current, f.name) for f in fields(current)})
            self.__dict__["_current"] = current
        return getattr(current, name)


gateway_settings: GatewaySettings = _SettingsProxy()  # type: ignore[assignment]


@receiver(setting_changed)
def _reload(**_: Any) -> None:
    vars(gateway_settings).clear()
