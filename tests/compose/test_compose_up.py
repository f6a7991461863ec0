"""`docker compose up --wait` gave the stack docker-compose.yml declares: every service with a
health check healthy, the one-shot setup completed, and nothing reachable from outside the host."""

from __future__ import annotations

import json
import os
import shlex

from tests.compose.stack import ComposeStack, run


def test_every_service_is_up_healthy_and_setup_completed(compose: ComposeStack):
    containers = {c["Service"]: c for c in compose.ps()}
    assert set(containers) == set(compose.services), "one container per service of the configuration"
    for name, service in compose.services.items():
        container = containers[name]
        if name == "setup":
            assert (container["State"], container["ExitCode"]) == ("exited", 0), container
        elif "healthcheck" in service:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container
        else:
            assert container["State"] == "running", container


def test_the_offline_override_changes_the_images_only_and_leaves_grafana_out():
    """The override changes where images come from, nothing of how the stack runs: the same
    services (Grafana aside: Debian has no package of it), commands, environment, ports, volumes,
    health checks, restart policies, dependencies and networks as docker-compose.yml alone."""
    command = shlex.split(os.environ["TEST_COMPOSE_CMD"])
    users = json.loads(run([*command, "-f", "docker-compose.yml", "config", "--format", "json"]))
    offline = json.loads(run([*command, "config", "--format", "json"]))  # COMPOSE_FILE names the override too
    assert set(users["services"]) - set(offline["services"]) == {"grafana"}
    assert set(offline["services"]) <= set(users["services"])
    for name, service in offline["services"].items():
        theirs = users["services"][name]
        for key in ("command", "environment", "ports", "volumes", "healthcheck", "restart", "depends_on", "networks"):
            assert service.get(key) == theirs.get(key), f"{name}: {key} differs from docker-compose.yml's"
        assert service["image"] != theirs["image"] or name not in ("kafka", "postgres", "prometheus")


def test_ports_are_published_on_loopback_only_and_the_workers_metrics_are_not(compose: ComposeStack):
    published: dict[str, list[str]] = {}
    for container in compose.ps():
        info = json.loads(run(["docker", "inspect", container["ID"]]))[0]
        for port, bindings in (info["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", f"{container['Service']} publishes {port} on {binding}"
                published.setdefault(container["Service"], []).append(port)
    assert set(published) == {"kafka", "postgres", "prima-sandbox", "shopify-sandbox", "shopify-ingest", "ops-api",
                              "prometheus"}, published
