"""What integration tests of every flow share: a throwaway database with the integration's tables
(made by the migrations, as `services.setup` makes them), throwaway Kafka topics, and the tests'
own Kafka broker with the consumer groups a test session made deleted at its end, so that no test
reads or writes the running stack's tables, topics or consumer groups."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.platform import migrations


@asynccontextmanager
async def scratch_database(server_url: str, label: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new database on the test server (migrated to head unless `migrate` is False), dropped after."""
    name = f"test_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        await admin.close()
        pytest.fail(f"the test user may not CREATE DATABASE on {urlparse(server_url).netloc}; these tests need a "
                    "throwaway database so as not to touch the running stack's tables")
    url = urlunparse(urlparse(server_url)._replace(path=f"/{name}"))
    try:
        if migrate:
            await asyncio.to_thread(migrations.upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def throwaway_topics(bootstrap: str) -> AsyncIterator:
    """`make(label, partitions=3) -> name`: new topics, deleted when the block ends."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    made: list[str] = []

    async def make(label: str, partitions: int = 3) -> str:
        name = f"test.{label}.{uuid.uuid4().hex[:12]}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        made.append(name)
        return name

    try:
        yield make
    finally:
        if made:
            await admin.delete_topics(made)
        await admin.close()


# ------------------------------------------------------------------ the tests' own Kafka broker

REPO = Path(__file__).resolve().parents[1]
# Another instance of deploy/local/kafka.sh than the stack's (127.0.0.1:19092): its own ports, its
# own state directory (jars, data, logs); the Makefile's TEST_KAFKA_* variables say the same.
TEST_KAFKA_PORT = int(os.environ.get("TEST_KAFKA_PORT", "29092"))
TEST_KAFKA_CONTROLLER_PORT = int(os.environ.get("TEST_KAFKA_CONTROLLER_PORT", "29093"))
TEST_KAFKA_STATE = Path(os.environ.get("SHOPIFY_PRIMA_STATE_DIR", REPO / ".run")) / "test-kafka"


def start_test_broker() -> str:
    """The tests' own local KRaft broker, started unless it runs already (it is left running for
    the next session; `make down` stops it); its bootstrap address. A file lock keeps two
    sessions that start at once from both starting it."""
    TEST_KAFKA_STATE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SHOPIFY_PRIMA_STATE_DIR": str(TEST_KAFKA_STATE), "KAFKA_PORT": str(TEST_KAFKA_PORT),
           "KAFKA_CONTROLLER_PORT": str(TEST_KAFKA_CONTROLLER_PORT),
           "KAFKA_HEAP": os.environ.get("TEST_KAFKA_HEAP", "512m")}
    with open(TEST_KAFKA_STATE / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = subprocess.run([str(REPO / "deploy" / "local" / "kafka.sh"), "start"], check=False, env=env,
                                 capture_output=True, text=True, timeout=600)
    if started.returncode:
        pytest.fail(f"the tests' Kafka broker (127.0.0.1:{TEST_KAFKA_PORT}, state in {TEST_KAFKA_STATE}) did not "
                    f"start:\n{started.stderr[-3000:]}")
    return f"127.0.0.1:{TEST_KAFKA_PORT}"


def cluster_id(bootstrap: str) -> str:
    """The id of the Kafka cluster at `bootstrap`: two addresses of one cluster give the same."""
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15).cluster_id


def consumer_groups(bootstrap: str) -> set[str]:
    """The ids of every consumer group the broker at `bootstrap` knows."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept until the answer is in
    listed = admin.list_consumer_groups(request_timeout=15).result()
    if listed.errors:
        raise listed.errors[0]
    return {group.group_id for group in listed.valid}


def delete_consumer_groups(bootstrap: str, groups: set[str], *, patience: float = 30.0) -> set[str]:
    """Delete `groups` from the broker at `bootstrap`. A group that still has members (a consumer
    not closed yet) cannot be deleted: it is tried again until `patience` runs out. The groups
    left, still in use."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    left, deadline = set(groups), time.monotonic() + patience
    while left:
        for group, future in admin.delete_consumer_groups(sorted(left), request_timeout=15).items():
            try:
                future.result()
                left.discard(group)
            except KafkaException as exc:
                if exc.args[0].name() == "GROUP_ID_NOT_FOUND":  # gone already
                    left.discard(group)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return left


async def partition_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The topic's end offset per partition."""
    from tests.inventory.integration.support import end_offsets

    return {tp.partition: offset for tp, offset in (await end_offsets(bootstrap, topic)).items()}


async def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets per partition, as `kafka-consumer-groups --describe` reads them."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {tp.partition: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()
