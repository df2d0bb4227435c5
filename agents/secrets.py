"""Secrets in the configuration (agents' header values, TLS client keys), encrypted at rest.

The keys are GATEWAY_SECRETS_KEYS, comma-separated: the first encrypts, every one decrypts, so a
key is rotated by putting a new one first, running `manage.py rotate_secrets` (every stored
secret re-encrypted with it), then dropping the old one. Unset, one key is derived from
SECRET_KEY (a start-up warning says so). Any long random string is a key: it is stretched to a
Fernet key (AES-128-CBC + HMAC-SHA256, `cryptography`) by SHA-256.

A stored secret reads `<fingerprint>:<token>`. The fingerprint names the key that encrypted it
without revealing it, so a backup says which key it needs and an import can say which is
missing.
"""

import base64
import hashlib
from dataclasses import dataclass
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from gateway_project.conf import gateway_settings

MARK = "(secret)"  # what a person sees instead of a value
CHANGED_MARK = "(secret changed)"  # what a diff shows for a changed secret
# How an export writes a stored secret: never the plain value, and still restorable by any
# gateway holding the key named by the fingerprint.
EXPORT_PREFIX = "encrypted:"


class SecretUnreadable(Exception):
    """A stored secret that none of the configured keys decrypts."""


@dataclass(frozen=True, slots=True)
class _Key:
    fingerprint: str
    fernet: Fernet


def secret_encrypt(plain: str) -> str:
    key = _keys()[0]
    return f"{key.fingerprint}:{key.fernet.encrypt(plain.encode()).decode()}"


def secret_decrypt(stored: str) -> str:
    fingerprint, _, token = stored.partition(":")
    for key in _keys():
        if key.fingerprint == fingerprint:
            try:
                return key.fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                break
    raise SecretUnreadable(
        f"encrypted with key {fingerprint}, which GATEWAY_SECRETS_KEYS does not hold"
    )


def secret_readable(stored: str) -> bool:
    try:
        secret_decrypt(stored)
    except SecretUnreadable:
        return False
    return True


def secret_rotated(stored: str) -> str:
    """The secret encrypted with the first key (unchanged when it already is)."""
    if stored.partition(":")[0] == _keys()[0].fingerprint:
        return stored
    return secret_encrypt(secret_decrypt(stored))


def secrets_key_derived() -> bool:
    """True when no GATEWAY_SECRETS_KEYS is set and the key comes from SECRET_KEY."""
    return not gateway_settings.secrets_keys


def secrets_key_fingerprints() -> list[str]:
    return [key.fingerprint for key in _keys()]


def _keys() -> list[_Key]:
    configured = gateway_settings.secrets_keys or (f"derived:{settings.SECRET_KEY}",)
    return [_key(text) for text in configured]


@cache
def _key(text: str) -> _Key:
    digest = hashlib.sha256(text.encode()).digest()
    fingerprint = hashlib.sha256(b"fingerprint:" + digest).hexdigest()[:8]
    return _Key(fingerprint, Fernet(base64.urlsafe_b64encode(digest)))
