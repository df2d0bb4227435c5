"""deploy/prometheus and deploy/grafana against the real metrics: promtool checks the rules and
their unit tests, lints a real scrape, and every series the rules or the dashboard use exists."""

import json
import re
import shutil
import subprocess

from tests.conftest import ROOT, chat_body

DEPLOY = ROOT / "deploy"
PROMTOOL = shutil.which("promtool")
SERIES = re.compile(r"\b(gateway_[a-z_]+)")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool missing: apt-get install prometheus (scripts/system-packages.txt)"
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_compose_prometheus_config_loads_the_rules() -> None:
    checked = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


async def test_a_real_scrape_passes_promtool_and_has_every_series_used(
    gateway, make_agent, fault_agent
):
    make_agent("cita", url=fault_agent.url("/ok"))
    make_agent("roto", url=fault_agent.url("/status/500"), retries=0)
    await gateway.post("/api/agent/chat", json=chat_body())
    await gateway.post("/api/agent/chat", json=chat_body(config={"modalidad": "roto"}))
    scrape = (await gateway.get("/metrics")).text

    linted = promtool("check", "metrics", stdin=scrape)
    assert linted.returncode == 0, linted.stdout + linted.stderr

    exposed = set(re.findall(r"^(gateway_[a-z_]+)", scrape, re.M))
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    dashboard = json.loads((DEPLOY / "grafana" / "agent-gateway.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(SERIES.findall(rules)) | {s for e in exprs for s in SERIES.findall(e)}
    assert used and used <= exposed, used - exposed
