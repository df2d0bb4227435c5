"""Secrets at rest (agents/secrets.py): encrypted with the first key, readable with any, named
by the key's fingerprint, rotated to the first key."""

import logging

import pytest

from agents.secrets import (
    SecretUnreadable,
    secret_decrypt,
    secret_encrypt,
    secret_rotated,
    secrets_key_derived,
    secrets_key_fingerprints,
)
from observability.logs import JsonFormatter, log_secrets_add


def test_a_secret_is_stored_encrypted_and_read_back(settings):
    settings.GATEWAY_SECRETS_KEYS = ["first-key-with-enough-randomness-1"]
    stored = secret_encrypt("Bearer s3cr3t")
    assert "s3cr3t" not in stored and stored.startswith(secrets_key_fingerprints()[0] + ":")
    assert secret_encrypt("Bearer s3cr3t") != stored  # randomised: equal secrets do not show
    assert secret_decrypt(stored) == "Bearer s3cr3t"
    assert not secrets_key_derived()


def test_rotation_new_key_first_old_still_reads_then_rotated_then_dropped(settings):
    settings.GATEWAY_SECRETS_KEYS = ["old-key-0123456789abcdef"]
    stored = secret_encrypt("x-api-key-value")
    old_fingerprint = secrets_key_fingerprints()[0]

    settings.GATEWAY_SECRETS_KEYS = ["new-key-fedcba9876543210", "old-key-0123456789abcdef"]
    assert secret_decrypt(stored) == "x-api-key-value"
    rotated = secret_rotated(stored)
    assert rotated.startswith(secrets_key_fingerprints()[0] + ":") and rotated != stored
    assert secret_rotated(rotated) == rotated

    settings.GATEWAY_SECRETS_KEYS = ["new-key-fedcba9876543210"]
    assert secret_decrypt(rotated) == "x-api-key-value"
    with pytest.raises(SecretUnreadable, match=f"encrypted with key {old_fingerprint}"):
        secret_decrypt(stored)


def test_without_keys_one_is_derived_from_the_secret_key(settings):
    settings.GATEWAY_SECRETS_KEYS = []
    settings.SECRET_KEY = "a-secret-key-for-this-test-only"
    stored = secret_encrypt("v")
    assert secrets_key_derived() and secret_decrypt(stored) == "v"
    settings.SECRET_KEY = "another-secret-key-entirely"
    with pytest.raises(SecretUnreadable):
        secret_decrypt(stored)


def test_a_tampered_secret_is_unreadable(settings):
    settings.GATEWAY_SECRETS_KEYS = ["k-0123456789abcdef"]
    stored = secret_encrypt("v")
    with pytest.raises(SecretUnreadable):
        secret_decrypt(stored[:-4] + "AAAA")


def test_log_lines_never_carry_a_registered_secret():
    secret = 'Bearer a"b\\c-0123456789'  # quotes and backslashes, escaped in the JSON line
    pem_key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END PRIVATE KEY-----\n"
    log_secrets_add([secret, pem_key, ""])
    record = logging.LogRecord("t", logging.ERROR, "", 0, "sent %s", (secret,), None)
    record.headers = {"Authorization": secret}
    record.key_line = "MIIEvQIBADANBgkqhkiG9w0B"
    line = JsonFormatter().format(record)
    assert "0123456789" not in line and "MIIEvQIBADANBgkqhkiG9w0B" not in line
    assert line.count("(secret)") == 3


def test_a_secret_that_contains_another_is_masked_whole():
    short, long = "tok-abcdef", "tok-abcdef-and-the-rest-of-it"
    for _ in range(5):  # whatever order the registry added them in
        log_secrets_add([short, long])
        line = JsonFormatter().format(
            logging.LogRecord("t", logging.ERROR, "", 0, "sent %s", (long,), None)
        )
        assert "the-rest-of-it" not in line and "(secret)" in line
