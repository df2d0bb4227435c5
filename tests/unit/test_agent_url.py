"""Agent URLs: http(s) only, and service names without a TLD (Compose, Kubernetes) accepted."""

import pytest
from django.core.exceptions import ValidationError

from agents.models.configuration import http_url_validator


@pytest.mark.parametrize(
    "url",
    [
        "http://demo-agents:8001/api/chat",
        "http://agent-cita/chat",
        "http://cita.agents.svc.cluster.local:8000/chat",
        "https://agents.example.com/v1/chat?x=1",
        "http://10.0.0.5:8001/chat",
        "http://[::1]:8080/",
        "http://localhost:8002/api/chat",
    ],
)
def test_accepted(url: str) -> None:
    http_url_validator(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://agents.example.com/chat",
        "agents.example.com/chat",
        "http://-agent:8000/",
        "http://agent_cita:8000/",
        "http://agent cita/",
        "http://agent:99999999/",
        "javascript:alert(1)",
        "http://[zz::1]/",
    ],
)
def test_rejected(url: str) -> None:
    with pytest.raises(ValidationError, match="Enter an http:// or https:// URL"):
        http_url_validator(url)
