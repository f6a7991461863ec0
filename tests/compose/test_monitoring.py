"""Monitoring checked against real metrics: the compose stack's Prometheus (the offline image,
deploy/prometheus/prometheus.yml and alerts.yml as docker-compose.yml mounts them) scrapes every
process while the tests send traffic, failures included. Then:
- every target is up, and every alert rule is loaded and evaluates without error;
- every metric an alert rule or a dashboard panel names is one the processes expose now (a
  renamed or removed metric fails here, whatever the traffic);
- every query of the provisioned Grafana dashboards parses and returns data, except the few
  listed in NO_DATA with the reason they legitimately return none;
- `promtool test rules` passes the alert rules' unit tests (deploy/prometheus/tests/).
Grafana itself does not run offline (Debian has no package): its panels' queries are run
through Prometheus's HTTP API, as Grafana would send them."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from contracts.topics import SHOPIFY_ORDERS
from tests.compose.api import Api, desired, new_order_id, new_skus
from tests.compose.stack import ROOT, ComposeStack, run
from tests.deploy.integration.test_compose import metric_names

ALERTS = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
ALERT_RULES = {r["alert"]: r for g in ALERTS["groups"] for r in g["rules"] if "alert" in r}
DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))}
PANEL_QUERIES = [
    pytest.param(panel["title"], target.get("legendFormat", ""), target["expr"],
                 id=f"{name}: {panel['title']} [{target.get('legendFormat') or target['expr']}]")
    for name, dashboard in DASHBOARDS.items()
    for panel in dashboard["panels"] for target in panel.get("targets", [])
]
# Grafana's $__rate_interval is at least four scrape intervals (1 m here) and grows with the
# range shown; 5 m covers the traffic these tests sent, as a "last 15 minutes" view does.
RATE_INTERVAL = "5m"

# Panel queries that legitimately return nothing after this run, by (panel title, legend), and
# why. Their metrics must still be exposed (checked). Every other query must return data.
NO_DATA = {
    ("Handler exceptions by type", "{{handler}} {{exception_type}}"): (
        "faststream_received_processed_messages_exceptions_total counts exceptions that escape a "
        "subscriber; services/platform/kafka.py's Consumer handles every failure itself (retries, "
        "dead letters), so a run without a defect in that wrapper has none"),
    ("Handler retries, by group", "{{group}}"): (
        "shopify_prima_handler_retries_total counts batches retried after a handler failed for a "
        "reason other than a dependency outage (a defect, a message it cannot process); undecodable "
        "messages are dead-lettered at once and outages are retried without counting, so nothing in "
        "this run makes one"),
    ("Payout paid to journal posted (latency)", "p50"): (
        "the compose run journals no payout (the payout flow is tested end to end against the local "
        "stack, tests/payouts/e2e), so shopify_prima_payout_paid_to_journal_seconds has no observation "
        "and its quantiles are NaN"),
    ("Payout paid to journal posted (latency)", "p99"): (
        "as p50: no payout is journalled in the compose run"),
}


class Prometheus:
    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self.http = http

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(f"{self.url}/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        return (await self.get("query", query=expr))["result"]

    async def values(self, expr: str) -> list[float]:
        """The query's sample values that are numbers (NaN, e.g. 0/0, is no data to Grafana either)."""
        return [v for v in (float(s["value"][1]) for s in await self.query(expr)) if not math.isnan(v)]

    async def wait_for(self, expr: str, timeout: float = 90) -> list[float]:
        deadline = time.monotonic() + timeout
        while not (found := await self.values(expr)):
            assert time.monotonic() < deadline, f"{expr} returned no data for {timeout}s"
            await asyncio.sleep(1)
        return found

    async def exposed(self, name: str) -> bool:
        """A target exposes the metric: its family is in the scrape's metadata (even with no
        series yet, as prometheus_client declares labelled metrics), or it has series."""
        suffixes = ("_bucket", "_sum", "_count", "_created")
        families = {name} | {name.removesuffix(s) for s in suffixes if name.endswith(s)}
        for family in families:
            if await self.get("metadata", metric=family):
                return True
        return bool(await self.get("series", **{"match[]": name}))


@pytest.fixture(scope="module")
async def prometheus(compose: ComposeStack) -> AsyncIterator[Prometheus]:
    async with compose.http() as http:
        yield Prometheus(compose.prometheus, http)


@pytest.fixture(scope="module")
async def traffic_with_failures(compose: ComposeStack, prometheus: Prometheus) -> None:
    """Beyond test_flows' orders and stock: the failures the dashboard and alerts watch for.
    A webhook with a bad signature; Prima answering 503 to every attempt at a sales order (parked,
    then re-driven when it answers again); Shopify answering 503 to an inventory push (parked,
    re-driven); a message on shopify.orders.v1 that no one can decode (dead-lettered)."""
    async with compose.http() as http:
        api = Api(compose, http)
        await api.clear_faults()
        try:
            response = await api.webhook("orders/paid", {"id": new_order_id()}, secret="not-the-secret")
            assert response.status_code == 401, response.text

            # Prima down for one sales order: every attempt fails, the command is parked
            await api.prima_faults(fail_next=5, fail_status=503)
            bodies = await api.paid_orders(1)
            await prometheus.wait_for('shopify_prima_commands_parked_total{command="CreateSalesOrder"}')
            await api.one_sales_order_each(bodies)  # re-driven once Prima answers

            # Shopify down for an inventory push
            (sku,) = new_skus("TEE")
            await api.sold_in_shopify({sku: 10})
            await api.shopify_faults(fail_next=12, fail_status=503)
            await api.prima_stock({sku: 6})
            await prometheus.wait_for('shopify_prima_commands_parked_total{command="SetInventoryLevel"}')
            await api.clear_faults()
            await api.wait_levels({sku: desired(sku, 6)}, timeout=120)

            producer = AIOKafkaProducer(bootstrap_servers=compose.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(SHOPIFY_ORDERS.name, b"{not json", key=b"compose-test")
            finally:
                await producer.stop()
            await prometheus.wait_for("shopify_prima_messages_dead_lettered_total")
        finally:
            await api.clear_faults()


async def test_prometheus_scrapes_every_process(compose: ComposeStack, prometheus: Prometheus):
    jobs = {job["job_name"] for job in yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
            ["scrape_configs"]}
    deadline = time.monotonic() + 60
    while True:
        targets = (await prometheus.get("targets"))["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
        if all(h == "up" for h, _ in health.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert set(health) == jobs
    assert {job: h for job, h in health.items() if h[0] != "up"} == {}


async def test_alert_rules_are_loaded_and_evaluate_without_error(prometheus: Prometheus):
    deadline = time.monotonic() + 60
    while True:
        rules = {r["name"]: r for g in (await prometheus.get("rules", type="alert"))["groups"] for r in g["rules"]}
        evaluated = all(not r["lastEvaluation"].startswith("0001") for r in rules.values())
        if evaluated or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert set(rules) == set(ALERT_RULES)
    assert {name: (r["health"], r.get("lastError")) for name, r in rules.items() if r["health"] != "ok"} == {}


@pytest.mark.parametrize("alert", sorted(ALERT_RULES))
async def test_every_metric_an_alert_names_is_exposed(prometheus: Prometheus, alert: str):
    await prometheus.wait_for("up")  # scraped at least once
    missing = [name for name in sorted(metric_names(ALERT_RULES[alert]["expr"])) if not await prometheus.exposed(name)]
    assert not missing, f"{alert} names {missing}, which no process of the running stack exposes"


@pytest.mark.parametrize(("panel", "legend", "expr"), PANEL_QUERIES)
async def test_dashboard_query_returns_data_after_traffic(prometheus: Prometheus, traffic_with_failures: None,
                                                          panel: str, legend: str, expr: str):
    query = expr.replace("$__rate_interval", RATE_INTERVAL)
    await prometheus.query(query)  # parses (a syntax error fails here, with Prometheus's message)
    missing = [name for name in sorted(metric_names(expr)) if not await prometheus.exposed(name)]
    assert not missing, f"{query} names {missing}, which no process of the running stack exposes"
    if (panel, legend) in NO_DATA:
        return
    # the last scrape may predate the traffic: a scrape interval and a little more
    await prometheus.wait_for(query, timeout=45)


def test_the_no_data_list_names_panel_queries_that_exist():
    assert set(NO_DATA) <= {(panel, legend) for panel, legend, _ in (p.values for p in PANEL_QUERIES)}


def test_promtool_passes_the_alert_rules_unit_tests(compose: ComposeStack):
    """promtool of the offline Prometheus image: the configuration and the rules check, and the
    rules' unit tests (deploy/prometheus/tests/alerts_test.yml) pass."""
    image = compose.services["prometheus"]["image"]
    mounts = ["-v", f"{ROOT / 'deploy/prometheus'}:/etc/prometheus:ro"]
    promtool = ["docker", "run", "--rm", *mounts, "--entrypoint", "promtool", image]
    run([*promtool, "check", "config", "/etc/prometheus/prometheus.yml"])
    out = run([*promtool, "test", "rules", "/etc/prometheus/tests/alerts_test.yml"])
    assert "SUCCESS" in out, out
    cases = yaml.safe_load((ROOT / "deploy/prometheus/tests/alerts_test.yml").read_text())["tests"]
    tested = {test["alertname"] for case in cases for test in case.get("alert_rule_test", [])}
    assert {"ShopifyPrimaExceptionsOpen", "ShopifyPrimaCommandsParked", "ShopifyPrimaConsumerStalled",
            "ShopifyPrimaPrimaDown", "ShopifyPrimaShopifyDown", "ShopifyPrimaInventoryPushesFailing"} <= tested
