"""The contract between docker-compose.yml, the code and the monitoring configuration.

No Docker is needed: the files are read and cross-checked. A process added to
docs/architecture.md must appear in compose, run a module that exists, and be scraped by
Prometheus if it serves /metrics; every file compose builds from or mounts must exist.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
ARCHITECTURE = (ROOT / "docs/architecture.md").read_text()


def python_module(service: dict) -> str | None:
    """The X of a service whose command is `python -m X`, else None."""
    command = service.get("command")
    if isinstance(command, str):
        command = command.split()
    if command and len(command) >= 3 and command[0].startswith("python") and command[1] == "-m":
        return command[2]
    return None


PY_SERVICES = {name: module for name, svc in SERVICES.items() if (module := python_module(svc))}
SETUP_SERVICE = next((name for name, module in PY_SERVICES.items() if module == "services.setup"), None)

# Rows of docs/architecture.md's process table: | process | `python -m module` | port |
DOC_ROW = re.compile(r"^\|\s*(?P<process>[^|]+?)\s*\|\s*`python -m (?P<module>[\w.]+)`\s*\|\s*(?P<port>\d+)\s*\|", re.M)
DOC_PROCESSES = [m.groupdict() for m in DOC_ROW.finditer(ARCHITECTURE)]


def service_for(module: str) -> str:
    names = [name for name, mod in PY_SERVICES.items() if mod == module]
    assert len(names) == 1, f"expected one compose service running `python -m {module}`, found {names}"
    return names[0]


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/", "~")):
                mounts.append((source, target))
        elif volume.get("type") == "bind":
            mounts.append((volume["source"], volume["target"]))
    return mounts


def scrape_targets() -> set[str]:
    return {
        target
        for job in PROMETHEUS["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }


def test_architecture_table_is_parsed():
    # Guards the tests below against a table format change that would make them vacuous.
    assert len(DOC_PROCESSES) >= 8, DOC_PROCESSES
    assert {"services.ops_api", "services.shopify_ingest", "sandboxes.prima"} <= {p["module"] for p in DOC_PROCESSES}


def test_compose_runs_every_python_process_of_the_architecture():
    missing = {p["module"] for p in DOC_PROCESSES} - set(PY_SERVICES.values())
    assert not missing, f"docs/architecture.md lists processes that docker-compose.yml does not run: {missing}"
    assert "services.setup" in PY_SERVICES.values(), "the one-shot setup service is missing"


@pytest.mark.parametrize(("service", "module"), sorted(PY_SERVICES.items()))
def test_python_module_exists(service: str, module: str):
    # `python -m a.b` needs a/b.py, or a/b/__main__.py for a package.
    path = ROOT.joinpath(*module.split("."))
    runnable = [path.with_suffix(".py"), path / "__main__.py"]
    assert any(p.is_file() for p in runnable), (
        f"compose service {service!r} runs `python -m {module}` but none of "
        f"{[str(p.relative_to(ROOT)) for p in runnable]} exists"
    )
    # The image must contain the module: deploy/Dockerfile copies the top-level packages.
    top = module.split(".")[0]
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    assert re.search(rf"^COPY\s+{top}\s", dockerfile, re.M), f"deploy/Dockerfile does not COPY package {top!r}"


@pytest.mark.parametrize("service", sorted(name for name, svc in SERVICES.items() if "build" in svc))
def test_build_context_and_dockerfile_exist(service: str):
    build = SERVICES[service]["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = ROOT / build.get("context", ".")
    assert context.is_dir(), f"{service}: build context {context} does not exist"
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"{service}: {dockerfile} does not exist"


def test_every_service_has_an_image_or_a_build():
    for name, svc in SERVICES.items():
        assert "image" in svc or "build" in svc, f"{name} has neither image nor build"


@pytest.mark.parametrize("service", sorted(name for name, svc in SERVICES.items() if bind_mounts(svc)))
def test_mounted_config_files_exist(service: str):
    for source, target in bind_mounts(SERVICES[service]):
        assert (ROOT / source).exists(), f"{service}: mounted {source} (-> {target}) does not exist"


def test_prometheus_scrapes_every_service_that_serves_metrics():
    targets = scrape_targets()
    labelled = {
        name: svc["labels"]["prometheus.io/port"]
        for name, svc in SERVICES.items()
        if str(svc.get("labels", {}).get("prometheus.io/scrape", "")).lower() == "true"
    }
    # Every process that docs/architecture.md says serves metrics is labelled, on its port.
    for process in DOC_PROCESSES:
        if "metrics" in process["process"]:
            name = service_for(process["module"])
            assert labelled.get(name) == process["port"], (
                f"{name} serves /metrics on {process['port']} (docs/architecture.md) "
                f"but is labelled {labelled.get(name)!r} in docker-compose.yml"
            )
    assert len(labelled) >= 6
    missing = {f"{name}:{port}" for name, port in labelled.items()} - targets
    assert not missing, f"deploy/prometheus/prometheus.yml does not scrape {missing}"
    # And no target points at a host that compose does not define.
    hosts = {t.rsplit(":", 1)[0] for t in targets} - {"localhost"}
    assert hosts <= set(SERVICES), f"scrape targets on unknown hosts: {hosts - set(SERVICES)}"


def test_prometheus_rule_files_are_mounted():
    mounted = {target: source for source, target in bind_mounts(SERVICES["prometheus"])}
    assert PROMETHEUS.get("rule_files"), "no alert rules loaded"
    for rule_file in PROMETHEUS["rule_files"]:
        assert rule_file in mounted, f"{rule_file} is not mounted into the prometheus container"
        rules = yaml.safe_load((ROOT / mounted[rule_file]).read_text())
        alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
        assert {"ShopifyPrimaServiceDown", "ShopifyPrimaExceptionsOpen", "ShopifyPrimaNoWebhooks",
                "ShopifyPrimaGatewayFailureRate"} <= alerts


def test_grafana_dashboards_use_the_provisioned_datasource():
    provisioning = ROOT / "deploy/grafana/provisioning"
    uids = {
        ds["uid"]
        for f in (provisioning / "datasources").glob("*.yml")
        for ds in yaml.safe_load(f.read_text())["datasources"]
    }
    dashboards = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert dashboards, "no Grafana dashboard"
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        used = {p["datasource"]["uid"] for p in dashboard["panels"] if isinstance(p.get("datasource"), dict)}
        assert used and used <= uids, f"{path.name} uses datasources {used}, provisioned: {uids}"
    exprs = " ".join(
        t["expr"] for path in dashboards for p in json.loads(path.read_text())["panels"] for t in p.get("targets", [])
    )
    for metric in ("shopify_prima_webhooks_received_total", "shopify_prima_webhooks_rejected_total",
                   "shopify_prima_orders", "shopify_prima_prima_gateway_calls_total",
                   "shopify_prima_webhook_to_sales_order_seconds_bucket", "faststream_received_processed_messages_total"):
        assert metric in exprs, f"no dashboard panel shows {metric}"


@pytest.mark.parametrize("service", sorted(PY_SERVICES))
def test_python_services_point_at_compose_hosts(service: str):
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    hosts = {
        "SHOPIFY_PRIMA_KAFKA_BOOTSTRAP": env.get("SHOPIFY_PRIMA_KAFKA_BOOTSTRAP", "").split(":")[0],
        "SHOPIFY_PRIMA_DATABASE_URL": urlsplit(env.get("SHOPIFY_PRIMA_DATABASE_URL", "")).hostname,
        "SHOPIFY_PRIMA_PRIMA_BASE_URL": urlsplit(env.get("SHOPIFY_PRIMA_PRIMA_BASE_URL", "")).hostname,
    }
    for variable, host in hosts.items():
        assert host in SERVICES, f"{service}: {variable} names host {host!r}, not a compose service"


@pytest.mark.parametrize("service", sorted(set(PY_SERVICES) - {SETUP_SERVICE}))
def test_python_services_start_after_setup(service: str):
    setup = service_for("services.setup")
    depends_on = SERVICES[service].get("depends_on", {})
    assert isinstance(depends_on, dict) and setup in depends_on, f"{service} does not wait for {setup}"
    assert depends_on[setup]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("service", sorted(PY_SERVICES))
def test_python_service_environment_is_accepted_by_settings(service: str, monkeypatch: pytest.MonkeyPatch):
    # services/config.py refuses unknown SHOPIFY_PRIMA_* variables: a misspelt one in compose
    # would stop the container at start-up.
    from services.config import Settings

    for name in [n for n in os.environ if n.startswith("SHOPIFY_PRIMA_")]:
        monkeypatch.delenv(name)
    for name, value in SERVICES[service].get("environment", {}).items():
        monkeypatch.setenv(name, str(value))
    Settings(_env_file=None)
