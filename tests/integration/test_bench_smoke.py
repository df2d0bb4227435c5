"""The benchmark still runs end to end (a short smoke run; the figures are bench/README.md's).

Every load must get the answers it expects (the runner probes each scenario first and counts
wrong statuses and socket errors), so a change that breaks a bench scenario fails here rather
than on the next person's measurement day.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_the_bench_runs_and_every_load_gets_the_expected_answers():
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--duration", "1", "--warmup", "0",
         "--only", "compare", "noagent", "inflight", "tenants", "--refs", "naive",
         "--inflight", "50",
         "--keepalive-wait", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [
        line for line in result.stdout.splitlines() if re.match(r"\| \S.* \| (ok|WRONG) \|$", line)
    ]
    # 4 scenarios x (stub, gateway, naive) + 4 without an agent + 2 x (gateway, with tenants)
    assert len(rows) == 4 * 3 + 4 + 2 * 2, result.stdout
    # The gateway and the stub must answer right; a reference proxy may falter in a 1 s run
    # on a busy machine (the full run reports it as WRONG), which is not the gateway's concern.
    ours = [
        row for row in rows if re.search(r"\| (gateway|gateway, 1,000 tenants|\S+ stub) \|", row)
    ]
    assert len(ours) == 4 * 2 + 4 + 2 * 2, "\n".join(rows)
    assert all(row.endswith("| ok |") for row in ours), "\n".join(rows)
    assert re.search(r"\| tenants @16: CPU per call, 1,000 tenants / none \| \d+\.\d\d \|",
                     result.stdout)  # fmt: skip
    assert "| 50 ms @64: gateway / straight to agent |" in result.stdout
    assert "| 50 in flight @5 s: answered 200 | 50.00 |" in result.stdout


def _busy_loops() -> set[Path]:
    """The processes running bench's busy loop (their /proc entries)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"while True: pass" in (entry / "cmdline").read_bytes():
                found.add(entry)
        except OSError:  # gone meanwhile
            continue
    return found


def test_the_half_core_run_shares_the_core_and_stops_its_busy_loop():
    before = _busy_loops()
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--duration", "1", "--warmup", "0",
         "--only", "noagent", "--refs", "--half-core"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "core 0 shared with a busy loop (--half-core)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| .* \| ok \|$", line)]
    assert len(rows) == 4, result.stdout
    assert _busy_loops() <= before


def test_compare_reverses_the_targets_order_in_the_second_round():
    """At one connection the first target after the stub read dearer (bench/README.md, "Issue
    15: deadlines on one timer"). `--only cpu` needs the FastAPI reference (bench/requirements.txt,
    not installed for the tests), so the naive proxy stands in for it here."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--duration", "1", "--warmup", "0", "--repeat", "2",
         "--only", "compare", "--refs", "naive"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rounds = result.stdout.split("Medians")[0].split("round 2/2")
    assert len(rounds) == 2, result.stdout
    first, second = (
        [line.split()[5] for line in text.splitlines()
         if line.startswith("  agent at once, 1 conc ") and "stub" not in line]
        for text in rounds
    )  # fmt: skip
    assert first == ["gateway", "naive"] and second == ["naive", "gateway"], result.stdout


@pytest.mark.parametrize("scenario", ["instant", "breaker"])
def test_the_in_process_bench_runs(scenario: str):
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", scenario, "--requests", "160", "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = rf"^{scenario} @ \S+, 16 at a time: CPU µs per request, 2 rounds of 160: [\d.]+ [\d.]+;"
    assert re.search(line, result.stdout, re.M), result.stdout


def test_the_tracing_rows_run_and_the_traced_gateways_export():
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--duration", "1", "--warmup", "0",
         "--only", "tracing", "--refs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| .* \| ok \|$", line)]
    assert len(rows) == 3, result.stdout  # off, 100 %, 1 %
    for share in ("100 %", "1 %"):
        assert f"| tracing {share} / off: CPU per call |" in result.stdout
    exported = re.search(
        r"^\| tracing 100 %: spans exported per request \| ([\d.]+) \|", result.stdout, re.M
    )
    # 2 per request (server and client span), less any the batch queue dropped under load
    assert exported and 1.0 < float(exported[1]) <= 2.0, result.stdout


def test_the_in_process_bench_runs_with_tracing():
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "instant", "--requests", "160", "--rounds", "2",
         "--tracing", "1%"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^instant @ \S+, 16 at a time, tracing 1%: CPU µs", result.stdout, re.M)


def test_the_rate_limit_bench_runs():
    result = subprocess.run(
        [sys.executable, "-m", "bench.rate_limits"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^\| 10,000 \| [\d.]+ \| [\d.]+ \| [\d.]+× \|$", result.stdout, re.M)


def test_a_bench_stopped_with_sigterm_stops_the_servers_it_started(tmp_path: Path) -> None:
    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from bench.stack import Stack\n"
        f"with Stack(Path({str(tmp_path)!r})) as stack:\n"
        "    print(stack.start_asyncio_stub().proc.pid, flush=True)\n"
        "    time.sleep(120)\n"
    )
    bench = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert bench.stdout is not None
    stub = int(bench.stdout.readline())
    try:
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        with pytest.raises(ProcessLookupError):  # stopped and reaped by the bench
            os.kill(stub, 0)
    finally:
        bench.kill()
        bench.wait()
        bench.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stub, signal.SIGKILL)
