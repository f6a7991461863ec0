"""Fixtures for the real parts: PostgreSQL and Kafka (testcontainers where Docker runs, else the
local services `make test` starts), and the running stack for end-to-end tests.

Tests live with their flow (tests/<flow>/unit|integration|e2e, the sandboxes' own in
tests/sandboxes/); the folder gives each test its marker, so `pytest -m unit` runs the fast ones."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.platform.settings import Settings, use_env_file

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its folder (unit, integration, e2e)."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        for kind in KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


STACK_ENV = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings the local stack runs with: the environment, then deploy/local/stack.env."""
    use_env_file(STACK_ENV)
    return Settings()


@pytest.fixture(scope="session")
def database_url(settings: Settings):
    """A real PostgreSQL: a throwaway container with Docker, else the local server."""
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg:
            yield pg.get_connection_url()
        return
    yield settings.database_url


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings):
    """A real Kafka broker: a container with Docker, else the local KRaft broker."""
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    yield settings.kafka_bootstrap


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The running stack (`make up` / `make test`); fails, never skips, when it is not up."""
    endpoints = {
        "ops API": f"http://{settings.ops_api_host}:{settings.ops_api_port}/health",
        "webhook ingest": f"http://{settings.ingest_host}:{settings.ingest_port}/health",
        "Prima sandbox": f"{settings.prima_base_url}/health",
    }
    for name, url in endpoints.items():
        try:
            httpx.get(url, timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            pytest.fail(f"{name} is not answering at {url} ({exc}); start the stack with `make up`")
    return settings


@contextlib.contextmanager
def _serving(app, name: str = "the app") -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), f"{name} did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def serve_app() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """`with serve_app(app, "the Prima sandbox") as base_url:` serves an ASGI app with uvicorn
    on a free loopback port in a thread, for as long as the block runs."""
    return _serving


@pytest.fixture(scope="session")
def ops_headers(settings: Settings) -> dict[str, str]:
    """The ops API's bearer token, as the local stack sets it (deploy/local/stack.env)."""
    assert settings.ops_api_token is not None, "SHOPIFY_PRIMA_OPS_API_TOKEN is set in deploy/local/stack.env"
    return {"Authorization": f"Bearer {settings.ops_api_token.get_secret_value()}"}
