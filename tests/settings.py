"""Test settings: the real settings with a test secret, DEBUG on and a fast registry poll."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("ALLOWED_HOSTS", "gateway.test,localhost,127.0.0.1")
os.environ.setdefault("REGISTRY_POLL_INTERVAL_S", "0.2")

from gateway_project.settings import *  # noqa: F403
from gateway_project.settings import DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not Django's shared-cache in-memory default: the registry poller thread reads while
    # tests write from other threads, and shared-cache table locks fail at once ("database table
    # is locked") where a file database waits out the lock (busy_timeout, WAL) as production does.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"gateway-tests-{os.getpid()}.sqlite3")
    }
