"""An agent's TLS settings as an SSL context built from PEM text (custom CA, client certificate
for mTLS, or no verification).

Here, in the configuration layer, because the same loading checks the PEM when an agent is saved
or imported (Agent.clean) and builds the context the agent's connection pool uses
(runtime/tls.py): once per client, never per request. The client key reaches `ssl` through a
file only this process can read, removed at once: `ssl` loads a certificate chain from files only.
"""

import os
import ssl
import tempfile
from dataclasses import dataclass, field


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
    except (ssl.SSLError, ValueError) as exc:
        raise TlsConfigError(f"the CA bundle does not load: {_reason(exc)}") from exc
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        _load_client_certificate(context, tls.client_cert, tls.client_key)
    elif tls.client_key:
        raise TlsConfigError("a client key needs its client certificate")
    return context


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or exc)


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
        except (ssl.SSLError, ValueError) as exc:
            # Never the key's text: ssl's messages name the failing step, not the PEM.
            raise TlsConfigError(
                f"the client certificate and key do not load together: {_reason(exc)}"
            ) from exc
