"""Fixtures for the real parts: PostgreSQL and Kafka (testcontainers where Docker runs, else the
local services `make test` starts), and the running stack for end-to-end tests.

Kafka for tests is never the stack's: `kafka_bootstrap` is the tests' own broker (a container, or
a second local broker on 127.0.0.1:29092, tests/support.py), with every topic of
contracts/topics.py made on it as `services.setup` makes them, and the consumer groups a session
made there deleted at its end. Tests that must see the stack's topics (e2e) ask for
`stack_kafka_bootstrap` and only read them; they drive traffic through the stack's HTTP edges.
The one exception is the example consumer another team would run
(tests/contracts/e2e/test_example_consumer.py): it consumes with groups of its own, as that team
would, and deletes them at its end.

Tests live with their flow (tests/<flow>/unit|integration|e2e, the sandboxes' own in
tests/sandboxes/); the folder gives each test its marker, so `pytest -m unit` runs the fast ones."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.platform.settings import Settings, use_env_file
from services.setup import create_topics
from tests.support import consumer_groups, delete_consumer_groups, start_test_broker

TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its folder (unit, integration, e2e)."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        for kind in KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


# Images the testcontainers fixtures run. Nothing is ever pulled: these machines reach no image
# registry, so a container is used only when its image is already in the engine (built or loaded).
POSTGRES_IMAGE = "postgres:16"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


def _docker(*args: str) -> bool:
    """`docker <args>` succeeds; False when there is no CLI, it fails or it hangs."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", *args], check=False, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _docker_available() -> bool:
    """A Docker engine answers (the CLI's `docker info`, DOCKER_HOST included)."""
    return _docker("info")


def _use_container(image: str, fallback: str) -> bool:
    """Whether a fixture runs `image` with testcontainers: only when a Docker engine answers and
    the image is present locally. When the engine answers but the image is absent (no registry to
    pull it from), the tests use the local service instead and a warning says so, instead of every
    test erroring on the pull. Ryuk (testcontainers' reaper) is turned off when its image is absent
    too; the fixtures stop their containers themselves."""
    if not _docker_available():
        return False
    if not _docker("image", "inspect", image):
        warnings.warn(
            f"a Docker engine answers but the image {image} is not present locally and is not pulled "
            f"(no registry is reachable); using the local service at {fallback} (`make up`) instead",
            stacklevel=2,
        )
        return False
    from testcontainers.core.config import testcontainers_config

    if not testcontainers_config.ryuk_disabled and not _docker("image", "inspect", testcontainers_config.ryuk_image):
        testcontainers_config.ryuk_disabled = True
    return True


STACK_ENV = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env"


# What `settings` gives as Kafka: no broker at all, so that a test reaches Kafka only through the
# `kafka_bootstrap` fixture (the tests' own broker) and never, by a forgotten override, the stack's.
NO_KAFKA = "127.0.0.1:1"


def _stack_settings() -> Settings:
    """The settings the local stack runs with: the environment, then deploy/local/stack.env."""
    use_env_file(STACK_ENV)
    return Settings()


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The local stack's settings, except Kafka: `NO_KAFKA`. Tests put `kafka_bootstrap` in."""
    return _stack_settings().model_copy(update={"kafka_bootstrap": NO_KAFKA})


@pytest.fixture(scope="session")
def database_url(settings: Settings):
    """A real PostgreSQL: a throwaway container when Docker has the image, else the local server."""
    if _use_container(POSTGRES_IMAGE, f"PostgreSQL {settings.database_url.rpartition('@')[2]}"):
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as pg:
            yield pg.get_connection_url()
        return
    yield settings.database_url


@pytest.fixture(scope="session")
async def kafka_bootstrap(settings: Settings):
    """The tests' own real Kafka broker, never the stack's: a container when Docker has the image,
    else a second local KRaft broker (tests/support.py start_test_broker). Every topic of
    contracts/topics.py is made on it first, so that a service run in-process finds the topics
    it names. At the end of the session the consumer groups it made there are deleted (the
    groups that were not there at its start; one still in use after 30 s is left, with a warning)."""
    if _use_container(KAFKA_IMAGE, "the tests' own local broker (tests/support.py)"):
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka:
            bootstrap = kafka.get_bootstrap_server()
            await create_topics(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
            yield bootstrap  # the container goes, its groups with it
        return
    bootstrap = start_test_broker()
    await create_topics(settings.model_copy(update={"kafka_bootstrap": bootstrap}))
    before = consumer_groups(bootstrap)
    yield bootstrap
    left = delete_consumer_groups(bootstrap, consumer_groups(bootstrap) - before)
    if left:
        warnings.warn(f"consumer groups still in use on the tests' broker {bootstrap}, not deleted: "
                      f"{', '.join(sorted(left))}", stacklevel=1)


@pytest.fixture(scope="session")
def stack_kafka_bootstrap(stack: Settings) -> str:
    """The running stack's own Kafka broker, for e2e tests that read the stack's topics. Nothing
    is published there and no consumer group is made there (read with group_id=None), but by the
    example consumer's test, which deletes its groups."""
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The running stack (`make up` / `make test`), with its settings (its Kafka included); fails,
    never skips, when it is not up."""
    settings = _stack_settings()
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
