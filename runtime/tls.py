"""An agent's transport options as its connection pool needs them: the SSL context (built from
the agent's PEM text by agents/tls.py, once per client, never per request) and the egress proxy
its requests go through."""

import urllib.request
from urllib.parse import urlsplit

from agents.tls import TlsConfigError, TlsSpec, ssl_context

__all__ = ["TlsConfigError", "TlsSpec", "egress_proxy", "ssl_context"]


def egress_proxy(url: str, proxy_url: str) -> str | None:
    """The agent's own proxy, else the standard HTTP_PROXY / HTTPS_PROXY / NO_PROXY variables."""
    if proxy_url:
        return proxy_url
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)
