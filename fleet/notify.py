"""Configuration-change notifications over Redis publish/subscribe (when REDIS_URL is set).

The database stays the source of truth: a change bumps a ConfigVersion row and every worker's
poller reloads when it sees the version move (fleet/sync.py). Polling alone bounds propagation
by REGISTRY_POLL_INTERVAL_S; with Redis, the saving process also publishes one message after its
commit and every worker's listener thread wakes its poller at once, so a change is served
everywhere within tens of milliseconds. The message carries no data, only "look now": a lost
message costs at most one poll interval, and when Redis is down everything works as without it.
"""

import logging
import threading
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("gateway.notify")

CHANNEL = "agent-gateway:config-changed"
_TIMEOUT_S = 0.5  # a publish must not hold an admin save for long when Redis is unreachable
_RECONNECT_MAX_S = 5.0


class ChangeNotifier:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        self._failures = 0  # consecutive failed subscriptions (the listener thread's own)

    def _connection(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=_TIMEOUT_S,
                    socket_connect_timeout=_TIMEOUT_S,
                    health_check_interval=30,
                    retry=Retry(NoBackoff(), retries=0),  # polling is the retry
                )
            return self._client

    def publish(self, name: str) -> None:
        """Tell every listening worker that `name` changed; never raises (polling is the net)."""
        try:
            self._connection().publish(CHANNEL, name)
        except redis.RedisError:
            logger.warning(
                "could not publish a configuration change; workers pick it up by polling",
                exc_info=True,
                extra={"event": "notify_publish_failed", "config": name},
            )

    def listen(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        """Call `on_change` for every message until `stop` is set (run in a daemon thread).

        Reconnects with a capped backoff and calls `on_change` after every (re)subscription, so
        a change published while this listener was cut off is not left to the poll interval.
        """
        while not stop.is_set():
            try:
                self._follow(on_change, stop)
            except (redis.RedisError, OSError):
                if self._failures == 0:
                    logger.warning(
                        "configuration notifications unavailable; polling the database",
                        exc_info=True,
                        extra={"event": "notify_down"},
                    )
                self._failures += 1
                stop.wait(min(0.1 * 2 ** (self._failures - 1), _RECONNECT_MAX_S))

    def _follow(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        """One subscription, until `stop` is set; raises when the connection fails."""
        with self._connection().pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.subscribe(CHANNEL)
            on_change()
            if self._failures:
                logger.info("configuration notifications resumed", extra={"event": "notify_up"})
                self._failures = 0
            while not stop.is_set():
                # A short timeout so `stop` is noticed; it also keeps the socket checked.
                if pubsub.get_message(timeout=1.0) is not None:
                    on_change()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
