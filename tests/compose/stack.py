"""The compose stack under test, as deploy/compose/test.sh started it: the compose command
(TEST_COMPOSE_CMD, with COMPOSE_FILE and COMPOSE_PROJECT_NAME in the environment), the resolved
configuration (`docker compose config`) and the host addresses of its published ports. Tests
talk to the stack only through those addresses (127.0.0.1) and the Docker CLI."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], timeout: float = 120) -> str:
    """Run a command from the repository root; its stdout, or an assertion naming what failed."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


@dataclass
class ComposeStack:
    command: list[str]
    config: dict[str, Any]

    @classmethod
    def from_environment(cls) -> ComposeStack:
        command = shlex.split(os.environ["TEST_COMPOSE_CMD"])
        config = json.loads(run([*command, "config", "--format", "json"]))
        return cls(command, config)

    # ------------------------------------------------------------------ configuration

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.config["services"]

    def env(self, service: str) -> dict[str, str]:
        return {name: str(value) for name, value in (self.services[service].get("environment") or {}).items()}

    def published(self, service: str, target: int) -> int:
        """The host port compose publishes the service's container port on (127.0.0.1 only)."""
        for port in self.services[service].get("ports", []):
            if int(port["target"]) == target:
                assert port.get("host_ip") == "127.0.0.1", f"{service}:{target} is published on {port.get('host_ip')!r}"
                return int(port["published"])
        raise AssertionError(f"{service} does not publish port {target}")

    def url(self, service: str, target: int) -> str:
        return f"http://127.0.0.1:{self.published(service, target)}"

    # the addresses and secrets the tests use, all from the configuration compose runs
    @property
    def webhook_url(self) -> str:
        return f"{self.url('shopify-ingest', 8081)}/webhooks/shopify"

    @property
    def ops(self) -> str:
        return self.url("ops-api", 8080)

    @property
    def prima(self) -> str:
        return self.url("prima-sandbox", 8090)

    @property
    def shopify(self) -> str:
        return self.url("shopify-sandbox", 8091)

    @property
    def prometheus(self) -> str:
        return self.url("prometheus", 9090)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.published('kafka', 19092)}"

    @property
    def webhook_secret(self) -> str:
        return self.env("shopify-ingest")["SHOPIFY_PRIMA_SHOPIFY_WEBHOOK_SECRET"]

    @property
    def ops_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env('ops-api')['SHOPIFY_PRIMA_OPS_API_TOKEN']}"}

    @property
    def prima_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env('prima-gateway')['SHOPIFY_PRIMA_PRIMA_API_KEY']}"}

    # ------------------------------------------------------------------ containers

    def compose(self, *args: str, timeout: float = 300) -> str:
        return run([*self.command, *args], timeout=timeout)

    def ps(self) -> list[dict[str, Any]]:
        """`docker compose ps -a` of the project: one dict per container."""
        out = self.compose("ps", "-a", "--format", "json").strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def container(self, service: str) -> str:
        ids = self.compose("ps", "-a", "-q", service).split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(run(["docker", "inspect", self.container(service)]))[0]

    def wait_healthy(self, service: str, *, restarts: int | None = None, timeout: float = 120) -> dict[str, Any]:
        """Until the service's container runs and its health check passes (and, if given, Docker
        has restarted it `restarts` times): its `docker inspect`."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            info = self.inspect(service)
            state = info["State"]
            healthy = state.get("Health", {}).get("Status", "healthy") == "healthy"
            if state["Running"] and healthy and (restarts is None or info["RestartCount"] == restarts):
                return info
            time.sleep(0.5)
        raise AssertionError(f"{service} not running and healthy after {timeout}s: {state}")

    def http(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=kw.pop("timeout", 30), **kw)
