"""An agent's TLS and egress settings as the connection pool needs them: an SSL context built
from PEM text (custom CA, client certificate for mTLS, or no verification), and the proxy its
requests go through.

Built once per client (a change makes a new client: `AgentSpec.transport_config`), never per
request. The client key reaches `ssl` through a file only it can read, removed at once: the
`ssl` module loads a certificate chain from files only.
"""

import os
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class TlsSpec:
    verify: bool = True
    ca_bundle: str = ""  # PEM; empty: the system's CAs
    client_cert: str = ""  # PEM, for mTLS
    client_key: str = field(default="", repr=False)  # PEM, decrypted; never in a repr or log

    @property
    def default(self) -> bool:
        return self == TlsSpec()


class TlsConfigError(ValueError):
    """PEM text that does not load; the message says which part."""


def ssl_context(tls: TlsSpec) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=tls.ca_bundle or None)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"the CA bundle does not load: {exc.reason or exc}") from exc
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        _load_client_certificate(context, tls.client_cert, tls.client_key)
    return context


def egress_proxy(url: str, proxy_url: str) -> str | None:
    """The agent's own proxy, else the standard HTTP_PROXY / HTTPS_PROXY / NO_PROXY variables."""
    if proxy_url:
        return proxy_url
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_path, key_path = (
            os.path.join(directory, "cert.pem"),
            os.path.join(directory, "key.pem"),
        )
        for path, text in ((cert_path, cert), (key_path, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_path, key_path if key else None)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"the client certificate and key do not load together: {exc.reason or exc}"
            ) from exc
