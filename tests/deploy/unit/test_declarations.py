"""The alert rules and the Grafana dashboard use what the code declares: every shopify_prima_*
metric they query is defined by a process, and every read model, state and exception kind they
name is declared by its read model (projections/*.py, one declaration each)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import services
from projections import READ_MODELS

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(shopify_prima_[a-z0-9_]+)")
SELECTOR = re.compile(r"(shopify_prima_[a-z0-9_]+)\{([^}]*)\}")
LABEL = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()))
    return found


EXPRESSIONS = [("alerts.yml", e) for e in _alert_exprs()] + [("dashboard", e) for e in _dashboard_exprs()]


def _defined_metrics() -> set[str]:
    """Every metric family the project's processes define (importing each module registers them)."""
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if ".migrations" in module.name:
            continue
        importlib.import_module(module.name)
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001 - the registry's own index
        for family in collector.describe() if hasattr(collector, "describe") else ():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def test_every_queried_metric_is_defined_by_a_process():
    defined = _defined_metrics()
    missing = sorted({(where, name) for where, expr in EXPRESSIONS for name in METRIC.findall(expr)
                      if name not in defined})
    assert not missing, f"queried but defined by no process: {missing}"


@pytest.mark.parametrize("where,expr", EXPRESSIONS)
def test_read_models_states_and_kinds_named_in_queries_are_declared(where, expr):
    for metric, labels in SELECTOR.findall(expr):
        if metric not in ("shopify_prima_read_model_rows", "shopify_prima_exceptions_open"):
            continue
        matchers = {name: (op, value) for name, op, value in LABEL.findall(labels)}
        assert "read_model" in matchers, f"{where}: {metric} is queried without read_model: {expr}"
        op, name = matchers["read_model"]
        assert op == "=" and name in READ_MODELS, f"{where}: unknown read model {name!r}"
        declared = READ_MODELS[name].states if metric == "shopify_prima_read_model_rows" else \
            READ_MODELS[name].exception_kinds
        label = "state" if metric == "shopify_prima_read_model_rows" else "kind"
        if label in matchers:
            op, value = matchers[label]
            values = value.split("|") if op in ("=~", "!~") else [value]
            unknown = [v for v in values if v not in declared]
            assert not unknown, f"{where}: {name} declares no {label} {unknown} (declared: {declared})"


def test_each_read_model_declares_its_states_and_kinds_once():
    for name, read_model in READ_MODELS.items():
        assert len(set(read_model.states)) == len(read_model.states), name
        assert len(set(read_model.exception_kinds)) == len(read_model.exception_kinds), name
    # the order read model's states are the Order's: the lifecycle's (issue 9) included
    assert READ_MODELS["order_sync"].states == ("awaiting_order", "received", "awaiting_payment", "quarantined",
                                                "sent", "in_prima", "amending", "cancelling", "after_cutoff",
                                                "cancelled", "failed")
