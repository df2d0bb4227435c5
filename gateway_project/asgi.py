"""The ASGI application: `gateway_project.asgi:application`.

A thin front over two Django handlers:
- the hot paths (chat, health, metrics) go to HotPathHandler: natively async middleware only, no
  thread hops, in-memory body with the contract's 413;
- everything else (admin, API docs, service info) goes to Django's stock ASGIHandler and its full
  middleware stack.
The front also gives every response its X-Request-ID, writes the access log line, runs a garbage
collection pass when it falls idle after a busy spell (idle_gc.py), and handles the lifespan: the
registry is loaded before the first request, and on shutdown (after the server has drained
in-flight requests) the agent clients are closed.
"""

import logging
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
django.setup(set_prefix=False)
# Python warnings (e.g. whitenoise's "No directory at: ..." while the middleware is built below,
# when collectstatic never ran) go through logging, so the "py.warnings" logger writes them as
# JSON lines like every other line on stdout, instead of plain text on stderr. Here rather than in
# settings, so pytest's own handling of warnings (filterwarnings = error) is left alone.
logging.captureWarnings(True)

from edge.application import GatewayFront  # noqa: E402

application = GatewayFront()
