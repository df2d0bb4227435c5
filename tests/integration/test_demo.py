"""The README's run path: seeded agents + demo agents + a real gateway give a real reply."""

import signal
import subprocess
import sys

import httpx

from tests.conftest import ROOT, free_port
from tests.servers import wait_for_port

SAMPLE = {
    "message": "Quiero agendar una cita",
    "session_id": 3796,
    "id_empresa": 1,
    "config": {"modalidad": "Citas"},
}


def test_seeded_agents_and_demo_agents_answer_the_readme_curl(live_db, gateway_process):
    # live_db starts with no agents: unapply and reapply the seed migration to get its rows back.
    live_db.manage("migrate", "agents", "0001", "--no-input")
    live_db.manage("migrate", "--no-input")
    base_port = free_port()
    while any(_in_use(base_port + i) for i in range(4)):
        base_port = free_port()
    live_db.python(
        "from agents.models import Agent\n"
        f"for offset, key in enumerate(['venta', 'cita', 'reserva', 'citas_ventas']):\n"
        f"    a = Agent.objects.get(key=key)\n"
        f"    a.url = a.url.replace(str(8001 + offset), str({base_port} + offset))\n"
        f"    a.save()\n"
    )
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo_agents", "--base-port", str(base_port)],
        cwd=ROOT,
        env=live_db.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(base_port + 3, timeout=20)
        gateway = gateway_process()
        for modalidad, agent in [("Citas", "cita"), ("ventas", "venta"), ("citas y ventas",
                                 "citas_ventas"), ("RESERVAS", "reserva")]:  # fmt: skip
            response = httpx.post(
                f"{gateway.url}/api/agent/chat",
                json={**SAMPLE, "config": {"modalidad": modalidad}},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            assert response.json() == {
                "reply": f"[{agent}] Recibí: Quiero agendar una cita",
                "session_id": 3796,
                "agent_used": agent,
                "url": None,
            }
        health = httpx.get(f"{gateway.url}/health", timeout=5)
        assert health.status_code == 200
        assert set(health.json()["agents"].values()) == {"ok"}
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(10)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(5)
        if demo.stdout:
            demo.stdout.close()


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
