"""Kafka's own command-line tools as deploy/local/kafka.sh ships them (kafka-tools, the broker's
version, fetched from Maven Central like the broker's jars) run against the running broker: topics
listed and described, a topic's messages printed by the console consumer (which commits no
offsets), and a projection's consumer group described with its lag, then deleted. Throwaway topics,
group and database."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any, ClassVar, Literal

import asyncpg
import pytest
from pydantic import BaseModel

from contracts.topics import TOPICS, TopicSpec
from projections.base import Projection, ReadModel
from services.platform.kafka import Outgoing, make_broker, publish_all
from services.projector import Projector
from tests.inventory.integration.support import eventually
from tests.support import (
    committed_offsets,
    partition_end_offsets,
    scratch_database,
    throwaway_topics,
)

KAFKA_SH = Path(__file__).resolve().parents[3] / "deploy" / "local" / "kafka.sh"


class ToolsSeen(BaseModel):
    message_type: Literal["ToolsSeen"] = "ToolsSeen"
    n: int


class Seen(Projection):
    """A test read model: one row per message."""

    tables: ClassVar[tuple[str, ...]] = ("public.tools_seen",)
    accepts = (ToolsSeen,)

    async def apply(self, conn: asyncpg.Connection, messages: list[Any]) -> None:
        await conn.executemany("INSERT INTO public.tools_seen VALUES ($1)", [(m.n,) for m in messages])


async def tool(*args: str) -> str:
    """Run `deploy/local/kafka.sh <args>`; its standard output (it must succeed)."""
    done = await asyncio.to_thread(subprocess.run, [str(KAFKA_SH), *args], capture_output=True, text=True,
                                   timeout=300, check=False)
    assert done.returncode == 0, f"kafka.sh {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


async def groups(bootstrap: str) -> set[str]:
    return set((await tool("consumer-groups", "--bootstrap-server", bootstrap, "--list")).split())




@pytest.fixture
async def topic(kafka_bootstrap):
    async with throwaway_topics(kafka_bootstrap) as make:
        yield await make("kafka-tools")


@pytest.fixture
async def pool(database_url):
    async with scratch_database(database_url, "kafka_tools") as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=3)
        await pool.execute("CREATE TABLE public.tools_seen (n int)")
        yield pool
        await pool.close()


async def test_topics_are_listed_and_described(kafka_bootstrap, topic):
    """Given the broker, when `kafka.sh topics --list` and `--describe` run, the project's topics and a new
    one are listed, and the new one is described with its three partitions."""
    listed = set((await tool("topics", "--bootstrap-server", kafka_bootstrap, "--list")).split())
    assert set(TOPICS) | {topic} <= listed
    described = await tool("topics", "--bootstrap-server", kafka_bootstrap, "--describe", "--topic", topic)
    assert re.search(rf"Topic: {re.escape(topic)}\s.*PartitionCount: 3\b", described)
    assert len(re.findall(rf"Topic: {re.escape(topic)}\s+Partition: \d", described)) == 3


async def test_the_console_consumer_prints_messages_with_key_and_headers_and_commits_nothing(
        settings, kafka_bootstrap, topic):
    """Given three messages on a topic, when the console consumer reads it from the beginning
    (`kafka.sh console-consumer --from-beginning --max-messages 3`, key and headers printed), it
    prints each message's key, headers and JSON body, exits, and commits no offset anywhere."""
    local = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    producer = make_broker(local, "kafka-tools-test")
    await producer.start()
    try:
        await publish_all(producer, [Outgoing(topic, f"key-{n}".encode(), ToolsSeen(n=n)) for n in range(3)])
    finally:
        await producer.stop()
    before = await groups(kafka_bootstrap)

    printed = await tool("console-consumer", "--bootstrap-server", kafka_bootstrap, "--topic", topic,
                         "--from-beginning", "--max-messages", "3", "--timeout-ms", "60000",
                         "--property", "print.key=true", "--property", "print.headers=true")

    lines = [line.split("\t") for line in printed.splitlines()]
    assert len(lines) == 3, printed
    assert sorted((key, ToolsSeen.model_validate_json(body)) for _, key, body in lines) == \
        [(f"key-{n}", ToolsSeen(n=n)) for n in range(3)]
    for headers, _, _ in lines:
        assert "message_type:ToolsSeen" in headers and "content-type:application/json" in headers
    # its throwaway group (console-consumer-<n>, removed by the broker's periodic clean-up) commits
    # nothing: no offsets, hence no lag for anyone's lag monitoring
    made = {g for g in await groups(kafka_bootstrap) - before if g.startswith("console-consumer-")}
    assert len(made) <= 1 and all([await committed_offsets(kafka_bootstrap, g) == {} for g in made])


async def test_a_projections_group_is_described_with_its_lag_then_deleted(settings, kafka_bootstrap, topic, pool):
    """Given a projection that applied five messages and stopped, and four messages more on its
    topic, when `kafka.sh consumer-groups --describe --group projector.<name>` runs, each partition's
    CURRENT-OFFSET is the position the projection stored in PostgreSQL and the LAG adds up to four;
    `--delete` then removes the group."""
    spec = TopicSpec(topic, "n", "test", messages=(ToolsSeen,))
    name = f"test_tools_{topic.rsplit('.', 1)[1]}"

    class Watched(Seen):
        read_model: ClassVar[ReadModel] = ReadModel(name=name)
        topic: ClassVar[TopicSpec] = spec

    local = settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap})
    producer = make_broker(local, "kafka-tools-test")
    await producer.start()
    try:
        await publish_all(producer, [Outgoing(topic, str(n).encode(), ToolsSeen(n=n)) for n in range(5)])
        projection = Watched(pool)
        projector = Projector(pool, names=[])
        projector.projections = {projection.name: projection}
        broker = make_broker(local, "kafka-tools-test")
        projector.follow(broker, local, projection)
        await broker.start()
        try:
            first = await partition_end_offsets(kafka_bootstrap, topic)

            async def applied_and_committed() -> bool:
                done = await committed_offsets(kafka_bootstrap, projection.group)
                return all(done.get(p, 0) == end for p, end in first.items())

            await eventually(applied_and_committed, "the five messages applied, then committed", 60)
            assert await pool.fetchval("SELECT count(*) FROM public.tools_seen") == 5
        finally:
            await broker.stop()
        await publish_all(producer, [Outgoing(topic, str(n).encode(), ToolsSeen(n=n)) for n in range(5, 9)])
    finally:
        await producer.stop()
    stored, ends = await projection.positions(pool), await partition_end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == 9

    described = await tool("consumer-groups", "--bootstrap-server", kafka_bootstrap, "--describe",
                           "--group", projection.group)
    lines = [line.split() for line in described.splitlines() if line.strip()]
    header = lines.index(next(line for line in lines if line[:2] == ["GROUP", "TOPIC"]))
    rows = [dict(zip(lines[header], line, strict=False)) for line in lines[header + 1:]]
    assert {int(r["PARTITION"]): int(r["CURRENT-OFFSET"]) for r in rows} == {p: stored.get(p, 0) for p in ends}
    assert {int(r["PARTITION"]): int(r["LOG-END-OFFSET"]) for r in rows} == ends
    assert {r["GROUP"] for r in rows} == {projection.group} and {r["TOPIC"] for r in rows} == {topic}
    assert sum(int(r["LAG"]) for r in rows) == 4
    assert projection.group in await groups(kafka_bootstrap)

    await tool("consumer-groups", "--bootstrap-server", kafka_bootstrap, "--delete", "--group", projection.group)
    assert projection.group not in await groups(kafka_bootstrap)
