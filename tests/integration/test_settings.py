"""Production settings: safe defaults, a clear stop without a secret, `check --deploy` clean."""

import os
import subprocess
import sys

from tests.conftest import ROOT

# The production environment the README documents (plus a throwaway database).
PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "-a-long-random-production-secret-value-0123456789",
    "ALLOWED_HOSTS": "gateway.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://gateway.example.com",
    "GATEWAY_API_KEY": "prod-key-1",
    "TRUST_X_FORWARDED_PROTO": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DEBUG"}}
    base.pop("SECRET_KEY", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_with_the_documented_production_environment() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_debug_a_missing_secret_key_stops_start_up_clearly() -> None:
    result = manage("check", env={"ALLOWED_HOSTS": "gateway.example.com"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_is_off_by_default() -> None:
    code = "from django.conf import settings; print(settings.DEBUG, settings.SESSION_COOKIE_SECURE)"
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert result.stdout.strip() == "False True", result.stderr


def database_settings(url: str, **extra: str) -> str:
    code = (
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['ENGINE'], d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d['OPTIONS'].get('pool'))"
    )
    result = manage("shell", "--no-imports", "-c", code,
                    env={"DEBUG": "1", "DATABASE_URL": url, **extra})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_postgres_uses_a_checked_pool_per_worker_and_no_persistent_connections() -> None:
    assert database_settings("postgres://gw:pw@db.internal:5432/gateway") == (
        "django.db.backends.postgresql 0 True {'min_size': 1, 'max_size': 4, 'timeout': 2.0}"
    )
    assert database_settings("postgres://gw:pw@pgbouncer:6432/gateway", DB_POOL="0") == (
        "django.db.backends.postgresql 60 True None"
    )
    assert database_settings("sqlite:////tmp/gateway-settings-test.sqlite3") == (
        "django.db.backends.sqlite3 60 True None"
    )
