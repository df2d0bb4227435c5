"""Test settings: the real settings with a test secret, DEBUG on and a fast registry poll."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("ALLOWED_HOSTS", "gateway.test,localhost,127.0.0.1")
os.environ.setdefault("REGISTRY_POLL_INTERVAL_S", "0.2")

from gateway_project.settings import *  # noqa: F403
