"""The contract between docker-compose.yml, the code and the monitoring configuration.

No Docker is needed: the files are read and cross-checked. A process added to
docs/architecture.md or to deploy/local/services.sh must appear in compose, run a module that
exists, listen where the others expect it, and be scraped by Prometheus if it serves /metrics;
every file compose builds from or mounts must exist; the image must hold every package and data
file the processes load; every metric an alert or a dashboard panel queries must be one the code
defines.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import pkgutil
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
ARCHITECTURE = (ROOT / "docs/architecture.md").read_text()
ALERTS = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
ALERT_RULES = {r["alert"]: r for g in ALERTS["groups"] for r in g["rules"] if "alert" in r}
DASHBOARDS = {path.name: json.loads(path.read_text()) for path in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))}


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


# deploy/local/services.sh's PROCESS_TABLE: name | module | port variable | port | check path.
_TABLE = re.search(r'^PROCESS_TABLE="\n(?P<rows>.*?)^"', (ROOT / "deploy/local/services.sh").read_text(), re.M | re.S)
LOCAL_PROCESSES = [
    dict(zip(("name", "module", "port_var", "port", "path"), line.split()))
    for line in (_TABLE["rows"].splitlines() if _TABLE else []) if line.strip()
]

# Which sandbox each process calls (it must wait for it in compose).
CALLS_SANDBOX = {
    "services.prima.gateway": "sandboxes.prima",
    "services.prima.poller": "sandboxes.prima",
    "services.shopify.gateway": "sandboxes.shopify",
    "services.shopify.catalog_reader": "sandboxes.shopify",
}


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


def env_file_values(service: dict) -> dict[str, str]:
    """The variables of a service's env_file(s), parsed as compose does for these files
    (KEY=VALUE, # comments, values unquoted)."""
    files = service.get("env_file", [])
    files = [files] if isinstance(files, (str, dict)) else files
    values: dict[str, str] = {}
    for entry in files:
        path = entry["path"] if isinstance(entry, dict) else entry
        for line in (ROOT / path).read_text().splitlines():
            match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
            if match:
                values[match[1]] = match[2].strip()
    return values


def service_env(service: dict) -> dict[str, str]:
    """What the container's environment holds: env_file, then `environment` over it."""
    env = env_file_values(service)
    env.update({name: str(value) for name, value in (service.get("environment") or {}).items()})
    return env


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
    assert {"services.ops.api", "services.shopify.ingest", "services.orders.decider", "services.inventory.decider",
            "sandboxes.prima"} <= {p["module"] for p in DOC_PROCESSES}


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
                "ShopifyPrimaGatewayFailureRate", "ShopifyPrimaInventoryDrift", "ShopifyPrimaInventoryPushesFailing",
                "ShopifyPrimaInventoryExceptionsOpen", "ShopifyPrimaPrimaIngestStale",
                "ShopifyPrimaShopifyThrottled", "ShopifyPrimaCatalogReadFailed", "ShopifyPrimaDeadLetters",
                "ShopifyPrimaProjectionHalted"} <= alerts


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
                   "shopify_prima_read_model_rows", "shopify_prima_prima_gateway_calls_total",
                   "shopify_prima_webhook_to_sales_order_seconds_bucket", "faststream_received_processed_messages_total",
                   "shopify_prima_messages_dead_lettered_total", "shopify_prima_handler_retries_total",
                   "shopify_prima_inventory_pushes_decided_total",
                   "shopify_prima_shopify_gateway_commands_total", "shopify_prima_shopify_throttle_available_points",
                   "shopify_prima_shopify_query_cost_points_total", "shopify_prima_shopify_throttled_total",
                   "shopify_prima_shopify_gateway_batches_total", "shopify_prima_shopify_gateway_batch_quantities_bucket",
                   "shopify_prima_prima_ingest_facts_published_total",
                   "shopify_prima_prima_ingest_last_success_timestamp_seconds", "shopify_prima_exceptions_open"):
        assert metric in exprs, f"no dashboard panel shows {metric}"


@pytest.mark.parametrize("service", sorted(PY_SERVICES))
def test_python_services_point_at_compose_hosts(service: str):
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    hosts = {
        "SHOPIFY_PRIMA_KAFKA_BOOTSTRAP": env.get("SHOPIFY_PRIMA_KAFKA_BOOTSTRAP", "").split(":")[0],
        "SHOPIFY_PRIMA_DATABASE_URL": urlsplit(env.get("SHOPIFY_PRIMA_DATABASE_URL", "")).hostname,
        "SHOPIFY_PRIMA_PRIMA_BASE_URL": urlsplit(env.get("SHOPIFY_PRIMA_PRIMA_BASE_URL", "")).hostname,
        "SHOPIFY_PRIMA_SHOPIFY_ADMIN_URL": urlsplit(env.get("SHOPIFY_PRIMA_SHOPIFY_ADMIN_URL", "")).hostname,
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
    # services/platform/settings.py refuses unknown SHOPIFY_PRIMA_* variables: a misspelt one in
    # compose would stop the container at start-up.
    from services.platform.settings import Settings

    for name in [n for n in os.environ if n.startswith("SHOPIFY_PRIMA_")]:
        monkeypatch.delenv(name)
    for name, value in service_env(SERVICES[service]).items():
        monkeypatch.setenv(name, value)
    Settings(_env_file=None)


# ---------------------------------------------------------------- deploy/local/services.sh


def test_process_table_is_parsed():
    assert len(LOCAL_PROCESSES) >= 12, LOCAL_PROCESSES
    assert all(len(p) == 5 for p in LOCAL_PROCESSES), LOCAL_PROCESSES
    assert {"services.inventory.decider", "services.shopify.gateway", "services.prima.poller",
            "services.shopify.catalog_reader", "services.ops.api"} <= {p["module"] for p in LOCAL_PROCESSES}


@pytest.mark.parametrize("process", LOCAL_PROCESSES, ids=lambda p: p["name"])
def test_local_process_runs_in_compose_on_the_same_port(process: dict[str, str]):
    """`make up` and `docker compose up` run the same processes on the same ports."""
    from services.platform.settings import PREFIX, Settings

    name = service_for(process["module"])
    service = SERVICES[name]
    env = service_env(service)
    # The port the process reads: set in compose to the table's value, or its default is.
    field = process["port_var"].removeprefix(PREFIX).lower()
    if field in Settings.model_fields:
        assert Settings.model_fields[field].default == int(process["port"]), (
            f"{process['port_var']} defaults to {Settings.model_fields[field].default} in "
            f"services/platform/settings.py, "
            f"{process['port']} in deploy/local/services.sh"
        )
    assert env.get(process["port_var"], process["port"]) == process["port"], (
        f"{name}: {process['port_var']}={env.get(process['port_var'])!r} in docker-compose.yml, "
        f"{process['port']} in deploy/local/services.sh"
    )
    # Compose's health check asks the same URL as services.sh.
    check = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
    assert f"http://127.0.0.1:{process['port']}{process['path']}" in check, (
        f"{name}: healthcheck {check!r} does not ask http://127.0.0.1:{process['port']}{process['path']}"
    )
    # And docs/architecture.md lists it with that port.
    documented = {p["module"]: p["port"] for p in DOC_PROCESSES}
    assert documented.get(process["module"]) == process["port"], (
        f"docs/architecture.md lists {process['module']} on {documented.get(process['module'])!r}, "
        f"deploy/local/services.sh on {process['port']}"
    )


@pytest.mark.parametrize("process", [p for p in LOCAL_PROCESSES if p["module"].startswith("services.")],
                         ids=lambda p: p["name"])
def test_every_service_process_is_scraped(process: dict[str, str]):
    # Every process of ours serves /metrics: the workers on their metrics port, the HTTP ones
    # (ingest, ops API) beside their API. The sandboxes stand in for Shopify and Prima: not scraped.
    name = service_for(process["module"])
    labels = SERVICES[name].get("labels", {})
    assert str(labels.get("prometheus.io/scrape", "")).lower() == "true", f"{name} is not labelled for scraping"
    assert labels.get("prometheus.io/port") == process["port"], f"{name}: labelled port {labels.get('prometheus.io/port')!r}"
    assert f"{name}:{process['port']}" in scrape_targets(), (
        f"deploy/prometheus/prometheus.yml does not scrape {name}:{process['port']}"
    )


@pytest.mark.parametrize("module", sorted(CALLS_SANDBOX))
def test_processes_wait_for_the_sandbox_they_call(module: str):
    name, sandbox = service_for(module), service_for(CALLS_SANDBOX[module])
    depends_on = SERVICES[name].get("depends_on", {})
    assert depends_on.get(sandbox, {}).get("condition") == "service_healthy", f"{name} does not wait for {sandbox}"
    # and calls it by its compose name
    url = service_env(SERVICES[name]).get(
        "SHOPIFY_PRIMA_PRIMA_BASE_URL" if sandbox == "prima-sandbox" else "SHOPIFY_PRIMA_SHOPIFY_ADMIN_URL", "")
    assert urlsplit(url).hostname == sandbox, f"{name} calls {url!r}, not {sandbox}"


@pytest.mark.parametrize("service", sorted(PY_SERVICES))
def test_compose_runs_the_local_stacks_inventory_configuration(service: str):
    """deploy/local/stack.env (read by `make up`) is the compose services' env_file, and no
    service overrides its values: both stacks run with the same location map and buffer."""
    stack = env_file_values({"env_file": ["deploy/local/stack.env"]})
    assert {"SHOPIFY_PRIMA_INVENTORY_LOCATION_MAP", "SHOPIFY_PRIMA_INVENTORY_BUFFER"} <= set(stack)
    env = service_env(SERVICES[service])
    for name, value in stack.items():
        assert env.get(name) == value, f"{service}: {name}={env.get(name)!r}, deploy/local/stack.env has {value!r}"


# ---------------------------------------------------------------- metric names


def defined_metrics() -> set[str]:
    """Every sample name the processes can expose: the metrics that services/ and projections/
    define (imported, so the names are the ones prometheus_client exposes, _total included),
    prometheus_client's process and platform collectors, FastStream's Kafka middleware, and
    Prometheus's own `up`."""
    from faststream.prometheus.container import MetricsContainer
    from prometheus_client import REGISTRY, CollectorRegistry

    for package in ("services", "projections"):
        for module in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if ".migrations" not in module.name:  # Alembic's env.py runs the migrations when imported
                importlib.import_module(module.name)
    faststream = CollectorRegistry()
    MetricsContainer(faststream, metrics_prefix="faststream", custom_label_names=())
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
    names = {"up"}
    for registry in (REGISTRY, faststream):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
             "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers that are not functions,
    keywords, label names, strings or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = set(re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return found - _KEYWORDS


def test_metric_name_extraction():
    assert metric_names('sum by (kind) (rate(a_total{x="y z"}[5m])) / on (job) b offset 30m > 0.05') == {"a_total", "b"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(c_bucket[$__rate_interval]))) or vector(0)") == {"c_bucket"}
    assert metric_names("time() - d > 300 and d > 0") == {"d"}


@pytest.mark.parametrize("alert", sorted(ALERT_RULES))
def test_alert_expressions_name_metrics_the_code_defines(alert: str):
    used = metric_names(ALERT_RULES[alert]["expr"])
    assert used, f"{alert}: no metric found in {ALERT_RULES[alert]['expr']!r}"
    unknown = used - defined_metrics()
    assert not unknown, f"{alert} queries {sorted(unknown)}, which no process exposes (typo or renamed metric?)"


@pytest.mark.parametrize("dashboard", sorted(DASHBOARDS))
def test_dashboard_panels_name_metrics_the_code_defines(dashboard: str):
    known = defined_metrics()
    for panel in DASHBOARDS[dashboard]["panels"]:
        for target in panel.get("targets", []):
            unknown = metric_names(target["expr"]) - known
            assert not unknown, f"{dashboard}, panel {panel['title']!r}: {sorted(unknown)} not exposed by any process"


def test_every_read_models_exceptions_are_alerted():
    """Each read model that declares exception kinds (projections/) has an alert on its open
    exceptions, selected by read_model as the projector labels the gauge."""
    from projections import READ_MODELS

    alerted = {match for rule in ALERT_RULES.values()
               for match in re.findall(r'shopify_prima_exceptions_open\{[^}]*read_model="([^"]+)"', rule["expr"])}
    assert alerted == {name for name, rm in READ_MODELS.items() if rm.exception_kinds}


# ---------------------------------------------------------------- the image and its configuration


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
DOCKERFILE = (ROOT / "deploy/Dockerfile").read_text()
DOCKERIGNORE = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]


def data_files(package: str) -> list[str]:
    """Files of a package that are not modules of an importable package (those setuptools
    installs only as package data): the migrations' versions and template, the contracts'
    YAML, JSON and GraphQL files. READMEs are for people, not loaded by anything."""
    top = ROOT / package
    return sorted(
        f.relative_to(top).as_posix() for f in top.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".md")
        and not (f.suffix == ".py" and (f.parent / "__init__.py").is_file())
    )


def test_the_image_copies_and_installs_every_package():
    assert set(PACKAGES) == {"contracts", "domain", "services", "projections", "sandboxes"}
    for package in PACKAGES:
        assert re.search(rf"^COPY\s+{package}\s+\./{package}\s*$", DOCKERFILE, re.M), f"the image lacks {package}/"
    assert re.search(r"^COPY\s+pyproject\.toml\s", DOCKERFILE, re.M)
    assert re.search(r"^RUN pip install --no-deps \.", DOCKERFILE, re.M), "the project itself is not installed"
    # the CLI entry point the image's default command runs is the one pyproject declares
    assert PYPROJECT["project"]["scripts"]["shopify-prima"] == "services.ops.cli:app"
    assert 'CMD ["shopify-prima"' in DOCKERFILE


@pytest.mark.parametrize("package", ["contracts", "services", "sandboxes"])
def test_every_data_file_is_package_data(package: str):
    """`pip install .` in the image installs a package's non-module files only if
    [tool.setuptools.package-data] names them: services.setup needs the migrations' versions."""
    patterns = PYPROJECT["tool"]["setuptools"].get("package-data", {}).get(package, [])
    missing = [f for f in data_files(package) if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not missing, f"{package}: not in pyproject.toml's package-data, so not installed: {missing}"
    if package == "services":
        assert {"platform/migrations/script.py.mako", "platform/migrations/versions/0001_baseline.py"} <= set(
            data_files(package))


def test_the_build_context_keeps_what_the_image_copies():
    """.dockerignore leaves out tests and caches, never a file of a package or the lock file."""
    kept = ["requirements.lock", "pyproject.toml"] + [f"{p}/{f}" for p in PACKAGES for f in data_files(p)] + [
        f"{p}/__init__.py" for p in PACKAGES]
    for pattern in DOCKERIGNORE:
        hit = [path for path in kept if fnmatch.fnmatch(path, pattern) or path.split("/")[0] == pattern]
        assert not hit, f".dockerignore {pattern!r} leaves out {hit}"


def test_the_ops_token_reaches_the_ops_api_container(monkeypatch: pytest.MonkeyPatch):
    """The ops API refuses to start without its bearer token: compose passes the local stack's
    one (deploy/local/stack.env, the env_file), as `make up` does."""
    from services.ops.api import create_app
    from services.platform.settings import Settings

    stack = env_file_values({"env_file": ["deploy/local/stack.env"]})
    assert stack.get("SHOPIFY_PRIMA_OPS_API_TOKEN"), "deploy/local/stack.env sets no ops API token"
    service = SERVICES[service_for("services.ops.api")]
    env = service_env(service)
    assert env["SHOPIFY_PRIMA_OPS_API_TOKEN"] == stack["SHOPIFY_PRIMA_OPS_API_TOKEN"]
    for name in [n for n in os.environ if n.startswith("SHOPIFY_PRIMA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # as the container reads its environment
    assert settings.ops_api_token.get_secret_value() == stack["SHOPIFY_PRIMA_OPS_API_TOKEN"]
    create_app(settings)  # starts (the lifespan, which connects, is not run here)
    with pytest.raises(SystemExit, match="SHOPIFY_PRIMA_OPS_API_TOKEN"):
        create_app(settings.model_copy(update={"ops_api_token": None}))
    # and its health check does not need the token
    check = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
    assert "/health" in check


# ---------------------------------------------------------------- offline override, host ports


OFFLINE = yaml.safe_load((ROOT / "deploy/compose/offline.yml").read_text())


def test_the_offline_override_changes_only_where_images_come_from():
    """deploy/compose/offline.yml (`make test-compose`) swaps images and build sections, and leaves
    Grafana out behind a profile: how the stack runs stays docker-compose.yml's alone."""
    assert set(OFFLINE["services"]) <= set(SERVICES)
    assert set(OFFLINE["services"]) == set(SERVICES), "every service is rebuilt offline or profiled out"
    for name, service in OFFLINE["services"].items():
        allowed = {"profiles"} if name == "grafana" else {"image", "build"}
        assert set(service) <= allowed, f"offline.yml changes {sorted(set(service) - allowed)} of {name}"
    assert OFFLINE["services"]["grafana"]["profiles"]
    # the public images stay docker-compose.yml's, for users
    assert {SERVICES[s]["image"].split(":")[0] for s in ("kafka", "postgres", "prometheus")} == {
        "apache/kafka", "postgres", "prom/prometheus"}


@pytest.mark.parametrize("service", sorted(OFFLINE["services"]))
def test_offline_builds_exist_and_take_the_base_image(service: str):
    build = OFFLINE["services"][service].get("build")
    if build is None:
        return
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), f"{service}: {dockerfile} does not exist"
    assert build.get("network") == "host", f"{service}: package installs need the host network"
    assert re.search(r"^ARG BASE_IMAGE=", dockerfile.read_text(), re.M), f"{dockerfile} takes no BASE_IMAGE"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}", dockerfile.read_text(), re.M)
    assert build["args"]["BASE_IMAGE"].startswith("shopify-prima-")


def test_the_app_image_builds_on_the_public_python_image_by_default():
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE, re.M)


@pytest.mark.parametrize("service", sorted(name for name, svc in SERVICES.items() if svc.get("ports")))
def test_ports_are_published_on_loopback_on_a_configurable_host_port(service: str):
    """Published on 127.0.0.1 only, the host port from a *_HOST_PORT variable (default: the port
    `make up` uses), so that `make test-compose` runs beside a running local stack."""
    for port in SERVICES[service]["ports"]:
        match = re.fullmatch(r"127\.0\.0\.1:\$\{(?P<var>[A-Z_]+_HOST_PORT):-(?P<default>\d+)\}:(?P<target>\d+)", port)
        assert match, f"{service}: {port!r} is not 127.0.0.1:${{X_HOST_PORT:-default}}:target"
        # not SHOPIFY_PRIMA_*: services/platform/settings.py refuses unknown ones in its environment
        assert not match["var"].startswith("SHOPIFY_PRIMA_"), match["var"]
    kafka = SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://127.0.0.1:${KAFKA_HOST_PORT:-19092}" in kafka, "Kafka must advertise the published port"


def test_the_alert_rules_have_unit_tests_for_what_must_page():
    tests = yaml.safe_load((ROOT / "deploy/prometheus/tests/alerts_test.yml").read_text())
    assert tests["rule_files"] == ["../alerts.yml"]
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    assert tested <= set(ALERT_RULES)
    # unmapped SKU exceptions, parked commands, consumer lag, Prima or Shopify down, pushes failing
    assert {"ShopifyPrimaExceptionsOpen", "ShopifyPrimaCommandsParked", "ShopifyPrimaConsumerStalled",
            "ShopifyPrimaPrimaDown", "ShopifyPrimaShopifyDown", "ShopifyPrimaServiceDown",
            "ShopifyPrimaInventoryPushesFailing"} <= tested
