"""The container's entrypoint and health check, run as the image runs them (no Docker engine
needed): migrations applied, production settings, the contract served, SIGTERM exits 0."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port

ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
ALLOCATOR = ROOT / "deploy" / "with-allocator.sh"


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK exec form, as a list."""
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", text, re.S)
    assert match, "Dockerfile has no exec-form HEALTHCHECK"
    import json

    return json.loads(match.group(1))


def test_entrypoint_migrates_serves_and_drains_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
        "SECRET_KEY": "entrypoint-test-secret",
        "DEBUG": "0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": str(port),
        "GATEWAY_DRAIN_S": "5",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "entrypoint.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", str(ENTRYPOINT)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, log.read_text()

        check = subprocess.run(
            healthcheck_command(), env=env, cwd=ROOT, timeout=10, capture_output=True
        )
        assert check.returncode == 0, check.stderr
        # The server runs on jemalloc (deploy/with-allocator.sh; scripts/system-packages.txt
        # installs libjemalloc2, as the Dockerfile does).
        assert "libjemalloc.so" in Path(f"/proc/{process.pid}/maps").read_text()

        # Migrated and seeded: the default routing names route (to agents that are not running).
        response = httpx.post(
            f"{base}/api/agent/chat",
            json={
                "message": "hola",
                "session_id": 1,
                "id_empresa": 1,
                "config": {"modalidad": "citas"},
            },
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["agent_used"] == "cita"
        # Nothing should listen on the seeded 127.0.0.1:8002; if a demo agent does, it answered.
        assert response.headers.get("x-gateway-fallback", "connection") == "connection"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise
    assert returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_entrypoint_runs_any_other_command() -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "echo", "one-off"], capture_output=True, text=True, timeout=10
    )
    assert result.stdout == "one-off\n"


def _environment_under(allocator: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    if allocator is not None:
        env["GATEWAY_ALLOCATOR"] = allocator
    result = subprocess.run(
        ["sh", str(ALLOCATOR), "env"], env=env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_with_allocator_preloads_jemalloc_unless_told_not_to() -> None:
    default = _environment_under(None)
    assert default["LD_PRELOAD"].endswith("/libjemalloc.so.2")
    assert Path(default["LD_PRELOAD"]).exists()
    assert default["PYTHONMALLOC"] == "malloc"  # else CPython's own allocator sits on top
    assert "dirty_decay_ms" in default["MALLOC_CONF"]
    plain = _environment_under("pymalloc")
    assert "LD_PRELOAD" not in plain and "PYTHONMALLOC" not in plain
