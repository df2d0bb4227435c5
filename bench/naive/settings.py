"""The naive baseline: Django + django-ninja + a default httpx.AsyncClient, nothing else.

What a first version of the gateway would look like: stock ASGI handler, no middleware (set
NAIVE_STOCK_MIDDLEWARE=1 for Django's default stack), no auth, metrics, logs or breaker.
"""

import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["ninja"]
ROOT_URLCONF = "bench.naive.urls"
DATABASES: dict = {}
USE_TZ = True
MIDDLEWARE = (
    [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    if os.environ.get("NAIVE_STOCK_MIDDLEWARE") == "1"
    else []
)
LOGGING_CONFIG = None
