"""Django settings: the only module that reads the environment.

Every value comes from the environment (or a `.env` file beside `manage.py`), read once by
django-environ, with production-safe defaults: DEBUG off, and no default secret key unless DEBUG
is on. Runtime code reads the typed `gateway_project.conf.gateway_settings`, never these names directly.
"""

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment (or .env), "
            "or DEBUG=1 for local development only."
        )
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "gateway_project.admin_site.GatewayAdminConfig",  # django.contrib.admin, throttled login
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "django_prometheus",
    "ninja",
    "agents",
    "access",
    "versions",
    "fleet",
    "console",
    "chat",
    "health",
]

# The admin/docs stack. The hot paths (chat, health, metrics) never pass through it: the ASGI
# front in gateway_project/asgi.py sends them to a lean handler running HOT_PATH_MIDDLEWARE.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Natively async middleware only (no MiddlewareMixin, so no thread hop per request).
HOT_PATH_MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "gateway_project.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DB_POOL", default=True
):
    # Under ASGI, Django runs sync code (the admin, the registry poller) in threads that come and
    # go, so persistent per-thread connections are not reused well (Django's docs advise against
    # them); a small psycopg pool per worker instead, checked before each use. A short pool
    # timeout lets the poller notice an outage and a recovery within seconds.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=4),
        "timeout": 2.0,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the registry poller of every worker read while the admin writes. IMMEDIATE takes
    # the write lock when a transaction begins, so it waits out another writer (busy_timeout);
    # a transaction that read first and then writes (deleting an agent collects its rows first)
    # would otherwise fail at once with "database is locked" when the poller wrote in between.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")

# Redis (optional): the shared cache (admin login lockout), rate-limit counters shared by every
# worker and instance, and configuration-change notifications (fleet/notify.py).
REDIS_URL = env.str("REDIS_URL", default="")
_cache_url = env.str("CACHE_URL", default="") or REDIS_URL
CACHES: dict[str, dict[str, Any]] = {
    "default": env.cache_url_config(_cache_url)
    if _cache_url
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Fail fast when Redis is unreachable instead of holding an admin request.
    CACHES["default"].setdefault("OPTIONS", {}).update(
        {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` writes (the image runs it at build time).
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Serve the admin's static files from the app finders in DEBUG (no collectstatic needed).
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ADMIN_URL_PATH = env.str("ADMIN_URL_PATH", default="admin/")
ADMIN_LOGIN_MAX_FAILURES = env.int("ADMIN_LOGIN_MAX_FAILURES", default=5)
ADMIN_LOGIN_LOCKOUT_S = env.int("ADMIN_LOGIN_LOCKOUT_S", default=900)

SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("TRUST_X_FORWARDED_PROTO", default=False)
    else None
)
# Admin and docs only (the hot paths never pass through SecurityMiddleware). Secure cookies by
# default outside DEBUG: the admin is meant to be reached over TLS.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)

# --- CORS (django-cors-headers). "*" allows any origin and never sends credentials. ---
_cors_origins = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = "*" in _cors_origins
CORS_ALLOWED_ORIGINS = [] if CORS_ALLOW_ALL_ORIGINS else _cors_origins
CORS_ALLOW_CREDENTIALS = (not CORS_ALLOW_ALL_ORIGINS) and env.bool(
    "CORS_ALLOW_CREDENTIALS", default=False
)
CORS_ALLOW_HEADERS = ["content-type", "accept", "x-request-id", "x-api-key", "authorization"]
CORS_EXPOSE_HEADERS = ["X-Request-ID", "X-Gateway-Fallback", "X-Gateway-Failover", "Retry-After"]
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]

# --- The gateway itself (typed view: gateway_project.conf.gateway_settings) ---
GATEWAY_NAME = env.str("GATEWAY_NAME", default="agent-gateway")
GATEWAY_HTTP_PORT = env.int("GATEWAY_HTTP_PORT", default=8000)
GATEWAY_API_KEYS = [k for k in env.list("GATEWAY_API_KEY", default=[]) if k]
# auto: auth is on once any key is configured here or exists (or ever existed) in the admin;
# on: a key is required even before one exists; off: the only way to turn auth off after keys.
GATEWAY_AUTH = env.str("GATEWAY_AUTH", default="auto").strip().lower()
# Keys for the secrets in the configuration (agents' header values, TLS client keys): the first
# encrypts, every one decrypts (agents/secrets.py). Unset: one derived from SECRET_KEY.
GATEWAY_SECRETS_KEYS = [
    k.strip() for k in env.list("GATEWAY_SECRETS_KEYS", default=[]) if k.strip()
]
if GATEWAY_AUTH not in ("auto", "on", "off"):
    raise ImproperlyConfigured(f"GATEWAY_AUTH must be auto, on or off, not {GATEWAY_AUTH!r}.")
AGENT_TIMEOUT = env.float("AGENT_TIMEOUT", default=25.0)
# uvicorn's --timeout-graceful-shutdown in the container (deploy/docker-entrypoint.sh reads the
# same variable, empty meaning 35): requests in flight get this long after SIGTERM. Read here so
# the start-up log and `check_agents` can report agents whose timeout_s + 10 s exceeds it.
GATEWAY_DRAIN_S = float(env.str("GATEWAY_DRAIN_S", default="") or 35)
# The Go gateway's per-agent variables (AGENT_<KEY>_URL / AGENT_<KEY>_ENABLED), kept raw for
# `manage.py import_agents --from-env`; the running gateway reads agents from the database only.
GO_GATEWAY_AGENT_ENV = {
    name: value
    for name, value in env.ENVIRON.items()
    if name.startswith("AGENT_") and name.endswith(("_URL", "_ENABLED"))
}
AGENT_MAX_RESPONSE_BYTES = env.int("AGENT_MAX_RESPONSE_BYTES", default=10 * 1024 * 1024)
# Idle keep-alive connections each agent's pool keeps for reuse (at most the agent's
# max_connections); a burst's connections beyond this are closed as they come back.
AGENT_KEEPALIVE_CONNECTIONS = env.int("AGENT_KEEPALIVE_CONNECTIONS", default=32)
# An agent pool's outlier ejection: 3 consecutive failures eject an endpoint for this long, times
# the number of its recent ejections (runtime/balancer.py).
ENDPOINT_EJECTION_BASE_S = env.float("ENDPOINT_EJECTION_BASE_S", default=30.0)
# The share of an agent's max_concurrency one empresa (id_empresa) may hold while another empresa
# wants a slot (runtime/limiter.py); 1 turns fair sharing off.
TENANT_FAIR_SHARE = env.float("TENANT_FAIR_SHARE", default=0.5)
if not 0 < TENANT_FAIR_SHARE <= 1:
    raise ImproperlyConfigured(
        f"TENANT_FAIR_SHARE must be above 0 and at most 1, not {TENANT_FAIR_SHARE!r}."
    )
CHAT_MAX_BODY_BYTES = 512 * 1024  # the contract's limit
# A request body must arrive within this (408 otherwise): slow uploads cannot pin connections.
BODY_READ_TIMEOUT_S = env.float("BODY_READ_TIMEOUT_S", default=10.0)
# A request line and headers must arrive within this of a connection opening or of a request's
# first byte, else the connection is closed (edge/header_timeout.py).
HEADER_READ_TIMEOUT_S = env.float("HEADER_READ_TIMEOUT_S", default=10.0)
REGISTRY_POLL_INTERVAL_S = env.float("REGISTRY_POLL_INTERVAL_S", default=1.0)
HEALTH_CHECK_TIMEOUT_S = env.float("HEALTH_CHECK_TIMEOUT_S", default=2.0)
LOG_MESSAGE_PREVIEW = env.int("LOG_MESSAGE_PREVIEW", default=40)
# Prometheus multiprocess mode (several workers): every process writes its samples to this
# directory and any worker's /metrics sums them (README "Operations"). prometheus_client reads the
# variable itself, in every process that imports a metric (manage.py commands too), and fails if
# the directory is missing; so it is created here, before any metric exists.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# Requests per minute per caller (API key; client IP when auth is off); 0 (the default) turns
# limiting off: one busy n8n is one IP, and any default would throttle it where the Go gateway
# never did. API keys in the admin may set their own, which apply even at 0. Shared across workers
# and instances through Redis.
RATE_LIMIT_PER_MINUTE = env.int("RATE_LIMIT_PER_MINUTE", default=0)
RATE_LIMIT_STORAGE_URI = env.str(
    "RATE_LIMIT_STORAGE_URI",
    default=f"async+{REDIS_URL}" if REDIS_URL.startswith("redis") else "async+memory://",
)

# --- Tracing (OpenTelemetry, observability/tracing.py): the standard OTEL_* variables. ---
# Off unless OTEL_TRACES_EXPORTER=otlp (the contract's section 5), and then OTLP over HTTP with
# protobuf. The SDK reads the variables the gateway does not interpret itself when tracing is
# on: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP[_TRACES]_HEADERS, _TIMEOUT,
# _COMPRESSION, _CERTIFICATE and OTEL_BSP_* (the batch processor's queue and delay).
OTEL_TRACES_EXPORTER = env.str("OTEL_TRACES_EXPORTER", default="none").strip().lower() or "none"
if env.bool("OTEL_SDK_DISABLED", default=False):
    OTEL_TRACES_EXPORTER = "none"
if OTEL_TRACES_EXPORTER not in ("none", "otlp"):
    raise ImproperlyConfigured(
        f"OTEL_TRACES_EXPORTER must be otlp or none, not {OTEL_TRACES_EXPORTER!r}."
    )
_otlp_protocol = (
    env.str("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", default="")
    or env.str("OTEL_EXPORTER_OTLP_PROTOCOL", default="")
    or "http/protobuf"
)
if OTEL_TRACES_EXPORTER == "otlp" and _otlp_protocol != "http/protobuf":
    raise ImproperlyConfigured(
        f"Traces are exported over OTLP/HTTP with protobuf only; the OTLP protocol is "
        f"{_otlp_protocol!r}."
    )
# As the specification resolves them: the traces endpoint as given, else the base endpoint with
# /v1/traces appended, else the local collector's.
OTEL_TRACES_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="") or (
    env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="http://localhost:4318").rstrip("/")
    + "/v1/traces"
)
OTEL_TRACES_SAMPLER = env.str("OTEL_TRACES_SAMPLER", default="parentbased_always_on").lower()
_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")  # fmt: skip
if OTEL_TRACES_SAMPLER not in _SAMPLERS:
    raise ImproperlyConfigured(
        f"OTEL_TRACES_SAMPLER must be one of {', '.join(_SAMPLERS)}, not {OTEL_TRACES_SAMPLER!r}."
    )
# The sampling ratio of the *traceidratio samplers (the share of traces started here).
OTEL_TRACES_SAMPLER_ARG = env.float("OTEL_TRACES_SAMPLER_ARG", default=1.0)
if not 0 <= OTEL_TRACES_SAMPLER_ARG <= 1:
    raise ImproperlyConfigured(
        f"OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, not {OTEL_TRACES_SAMPLER_ARG!r}."
    )

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "observability.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "observability.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
        # uvicorn's own lines (started, shutting down) as JSON on stdout like ours; its access
        # line is off, the gateway writes its own.
        "uvicorn": {
            "handlers": ["stdout"],
            "level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL,
            "propagate": False,
        },
        "uvicorn.access": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

NINJA_PAGINATION_CLASS = "ninja.pagination.LimitOffsetPagination"
