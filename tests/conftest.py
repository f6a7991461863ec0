"""Fixtures for the real parts: PostgreSQL and Kafka (testcontainers where Docker runs, else the
local services `make test` starts), and the running stack for end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from services.config import Settings, use_env_file


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
