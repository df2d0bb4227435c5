"""The default rate limit cannot throttle a single n8n: one busy n8n is one client IP (auth off)
or one key, and the Go gateway never limited it. Limits are opt-in: `RATE_LIMIT_PER_MINUTE`, or
an admin key's own `requests_per_minute`."""

import asyncio
from collections import Counter

from tests.conftest import chat_body, in_thread

CHAT = "/api/agent/chat"


async def test_by_default_one_ip_gets_1500_requests_a_minute_through(
    gateway, make_agent, fault_agent
):
    """No RATE_LIMIT_PER_MINUTE override: the settings' default. 1,500 requests (25/s for a
    minute, more than the old default of 1,200 allowed) from one IP, sent in a few seconds, so
    they fall in one minute whatever its window."""
    make_agent("cita", url=fault_agent.url("/ok"), max_concurrency=100, max_connections=100)
    statuses: Counter[int] = Counter()
    for _ in range(30):
        batch = await asyncio.gather(*(gateway.post(CHAT, json=chat_body()) for _ in range(50)))
        statuses.update(response.status_code for response in batch)
    assert statuses == {200: 1500}


async def test_an_admin_keys_own_limit_still_applies_with_the_default(
    gateway, make_agent, fault_agent
):
    from access.services import api_key_create

    make_agent("cita", url=fault_agent.url("/ok"))
    _, plain = in_thread(lambda: api_key_create(name="limited", requests_per_minute=2))
    headers = {"X-API-Key": plain}
    statuses = [
        (await gateway.post(CHAT, json=chat_body(), headers=headers)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
