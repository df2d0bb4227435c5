"""Two uvicorn workers, one scrape: prometheus multiprocess mode sums what both served."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import chat_body
from tests.metrics import sample

CHAT = "/api/agent/chat"


def workers_that_served(metrics_dir: Path) -> int:
    """Worker files holding a chat request count (one file per worker process)."""
    return sum(
        any("gateway_requests_total" in key for key, *_ in MmapedDict.read_all_values_from_file(p))
        for p in metrics_dir.glob("counter_*.db")
    )


def test_one_scrape_sums_every_worker(live_db, gateway_process, fault_agent, tmp_path):
    live_db.python(
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/slow/0.2')}')\n"
        "RoutingName.objects.create(agent=a, name='cita')"
    )
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale from a previous run")
    gateway = gateway_process("--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert not (metrics_dir / "counter_999999.db").exists()  # wiped at start

    sent = 0

    def one(_: int) -> int:
        with httpx.Client(timeout=10) as client:  # a new connection each: spread over workers
            return client.post(f"{gateway.url}{CHAT}", json=chat_body()).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        for _ in range(5):
            assert set(pool.map(one, range(20))) == {200}
            sent += 20
            if workers_that_served(metrics_dir) >= 2:
                break
    assert workers_that_served(metrics_dir) == 2, "the load never reached the second worker"

    scrape = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    assert sample(scrape, "gateway_requests_total", agent="cita", status="200") == sent
    # Another worker's live gauges reach a scrape through the file it rewrites every 0.5 s.
    deadline = time.monotonic() + 3
    while sample(scrape, "gateway_inflight_requests", agent="cita") != 0:
        assert time.monotonic() < deadline, "in-flight calls never back to 0"
        time.sleep(0.05)
        scrape = httpx.get(f"{gateway.url}/metrics", timeout=5).text
