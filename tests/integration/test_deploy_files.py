"""compose.yaml and deploy/k8s: the settings they pass exist, their grace periods cover the
drain, their probes answer, and the compose demo agents import cleanly."""

import json
import re
from typing import Any

import yaml

from tests.conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
SETTINGS_SOURCE = (ROOT / "gateway_project" / "settings.py").read_text()
ENTRYPOINT = (ROOT / "deploy" / "docker-entrypoint.sh").read_text()


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def k8s(kind: str) -> dict[str, Any]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == kind:
                return document
    raise AssertionError(f"no {kind} in deploy/k8s")


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match[1])


def longest_demo_agent_timeout() -> float:
    rows = json.loads((ROOT / "deploy" / "compose" / "demo-agents.json").read_text())
    return max(float(row["timeout_s"]) for row in rows)


def assert_known_settings(names: list[str]) -> None:
    """Every variable is read by settings.py (env.<type>("NAME") or the Go gateway's AGENT_*)
    or by the container entrypoint: a typo would otherwise be silently ignored."""
    unknown = [
        name
        for name in names
        if f'"{name}"' not in SETTINGS_SOURCE and f"${{{name}" not in ENTRYPOINT
    ]
    assert not unknown, unknown


def test_compose_runs_two_workers_on_postgres_and_redis_with_limits_and_checks():
    services = compose()["services"]
    assert {"gateway", "postgres", "redis", "prometheus", "demo-agents", "migrate"} <= set(services)
    gateway = services["gateway"]
    assert gateway["environment"]["WEB_CONCURRENCY"] == "2"
    assert gateway["environment"]["DATABASE_URL"].startswith("postgres://")
    assert gateway["environment"]["REDIS_URL"].startswith("redis://")
    assert_known_settings(list(gateway["environment"]))
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
        limits = service["deploy"]["resources"]["limits"]
        assert limits["memory"] and limits["cpus"], name


def test_compose_grace_period_covers_the_drain_and_the_longest_agent_timeout():
    gateway = compose()["services"]["gateway"]
    drain = float(gateway["environment"]["GATEWAY_DRAIN_S"])
    assert drain >= longest_demo_agent_timeout() + 10
    assert seconds(gateway["stop_grace_period"]) >= drain + 5


def test_compose_prometheus_mounts_the_rules_and_scrapes_the_gateway():
    prometheus = compose()["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gateway:8000"]


def test_the_compose_demo_agents_import_cleanly(live_db):
    live_db.manage("import_agents", str(ROOT / "deploy" / "compose" / "demo-agents.json"))
    urls = live_db.python(
        "from agents.models import Agent\n"
        "print(sorted(Agent.objects.values_list('url', flat=True)))"
    )
    assert urls.strip() == str([f"http://demo-agents:{p}/api/chat" for p in range(8001, 8005)])


def test_k8s_manifests_are_complete():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert all((K8S / name).exists() for name in kustomization["resources"])
    for kind in ("Deployment", "Service", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"):
        k8s(kind)
    assert_known_settings(list(k8s("ConfigMap")["data"]))
    assert_known_settings(list(k8s("Secret")["stringData"]))
    job = k8s("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["python", "manage.py", "migrate", "--no-input"]
    assert k8s("ConfigMap")["data"]["MIGRATE_ON_START"] == "0"


def test_k8s_grace_period_covers_prestop_and_drain():
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(k8s("ConfigMap")["data"]["GATEWAY_DRAIN_S"])
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + drain + 5


async def test_k8s_probes_answer_with_a_pod_ip_host_header(gateway, make_agent):
    """The kubelet sends the pod IP as Host; the probe paths must not be refused by
    ALLOWED_HOSTS (which lists the public names)."""
    container = k8s("Deployment")["spec"]["template"]["spec"]["containers"][0]
    probes = {name: container[name]["httpGet"]["path"]
              for name in ("startupProbe", "readinessProbe", "livenessProbe")}  # fmt: skip
    assert probes["readinessProbe"] == "/health/ready"
    assert probes["livenessProbe"] == "/health/live"
    make_agent("cita")
    for path in probes.values():
        response = await gateway.get(path, headers={"Host": "10.42.0.17:8000"})
        assert response.status_code == 200, (path, response.text)


def test_k8s_trusts_forwarded_headers_only_from_listed_networks():
    """`FORWARDED_ALLOW_IPS="*"` would let any pod that reaches the gateway choose the client IP
    (per-IP rate limits, logs): only addresses or CIDR networks, each one valid."""
    import ipaddress

    allowed = k8s("ConfigMap")["data"]["FORWARDED_ALLOW_IPS"]
    entries = [entry.strip() for entry in allowed.split(",")]
    assert "*" not in allowed and all(entries), allowed
    for entry in entries:
        ipaddress.ip_network(entry)  # an address or a network, never a wildcard or a name
