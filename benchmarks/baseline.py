"""Baseline: the floor of the platform under the orders pipeline, on the stack's Kafka and PostgreSQL.

    python -m benchmarks.orders --baseline --orders N                     # one message at a time
    python -m benchmarks.orders --baseline-batch --orders N               # batches
    python -m benchmarks.orders --baseline --baseline-batch --orders N    # both, one after the other

A bare loop with the guarantees of one stage of the real pipeline and nothing else: per message,
consume from a Kafka topic, insert one row into a PostgreSQL table, produce a message to a second
topic (FastStream KafkaBroker: idempotent producer, acks=all, the produce awaited until
acknowledged), and only then commit the offset (AckPolicy.NACK_ON_ERROR, as the services'
subscribers). One at a time (`--baseline`): one handler call per message, `--baseline-workers`
consumers in the group, each owning whole partitions (default SHOPIFY_PRIMA_CONSUMER_WORKERS where
the settings still have it, else 3: one per partition). Batch (`--baseline-batch`): a FastStream
batch subscriber, one consumer, up to `--baseline-max-records` per batch (default
SHOPIFY_PRIMA_CONSUMER_BATCH_SIZE, else 500) after a wait of SHOPIFY_PRIMA_CONSUMER_BATCH_WAIT_MS
(else 100 ms), as the services' batch consumers; one INSERT ... SELECT FROM unnest(...) per batch
(one commit), the batch's outputs produced together and all acknowledged, one offset commit.
The producer keeps aiokafka's default linger (0 ms): the floor, not the services' tuning.

Each run uses its own throwaway topics, `bench.baseline.in.<runid>` and `bench.baseline.out.<runid>`
(3 partitions, created with aiokafka's admin client), its own consumer group and its own table
`bench.baseline_<runid>`; the topics, the table and the schema `bench` (if empty) are removed at
the end. Kafka keeps the empty consumer group until its offsets expire (aiokafka cannot delete it).

The run: the consumers join their group on the empty input topic and hold; N messages are
produced to it, each an order webhook body as the orders benchmark sends
(sandboxes.shopify.orders.random_paid_order, keyed by order id, with the produce time and a
sequence number in headers); then the clock starts and the loop is released. It stops when N
outputs have been acknowledged; the output topic's end offsets must then hold them all and the
table N rows. Printed: messages/s (N / time from release to the last output acknowledged) and
latency percentiles per message, from its produce to the input topic to its output acknowledged
(as the topic is filled before the loop starts, this includes the time a message waited there,
like orders queued by a burst) and within the loop (handler called -> output acknowledged); the
CPU used per process during the loop; a last line per mode, "baseline (batch): X msg/s, ...",
to set beside the orders benchmark's last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from rich.table import Table

from benchmarks.orders import console, cpu_snapshot, machine_busy_seconds, percentile, print_cpu, print_machine
from sandboxes.shopify.orders import random_paid_order

from services.platform.settings import Settings

PARTITIONS = 3
SCHEMA = "bench"
SEQ_HEADER = "bench-seq"
PRODUCED_AT_HEADER = "bench-produced-at-ns"  # time.time_ns() when the message was produced to the input topic
# SKUs like the sandbox's (the orders benchmark reads them from Prima; the body's size is what matters)
SKUS = ["MUG-STONE", "TEE-BLK-L", "TEE-BLK-M", "NEW-1795754483126369", "NEW-1795754503309439"]
DEFAULT_WORKERS = PARTITIONS  # one consumer per partition


@dataclass
class Loop:
    """What the loop did, filled by its handlers."""
    n: int
    latency: dict[int, float] = field(default_factory=dict)  # seq -> s from produced to output acknowledged
    in_loop: list[float] = field(default_factory=list)  # s from handler called to output acknowledged
    batches: list[int] = field(default_factory=list)  # messages per handler call
    handled_again: int = 0  # messages delivered more than once (a rebalance before their commit)
    last_ack: float = 0.0  # perf_counter of the last new output acknowledged
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def acked(self, seq: int, produced_ns: int, got: float) -> None:
        now_ns, now = time.time_ns(), time.perf_counter()
        if seq in self.latency:
            self.handled_again += 1
            return
        self.latency[seq] = (now_ns - produced_ns) / 1e9
        self.in_loop.append(now - got)
        self.last_ack = now
        if len(self.latency) >= self.n:
            self.done.set()


@dataclass
class Result:
    mode: str  # "one at a time" or "batch"
    handling: str
    n: int
    body_bytes: float
    prefill_seconds: float
    joined: bool  # the group was stable before the clock started
    elapsed: float | None  # release -> last output acknowledged; None if not all were
    loop: Loop
    rows: int
    outputs: int
    cpu: tuple = ()  # (before, after, busy_before, busy_after)


def make_broker(settings: Settings, name: str) -> KafkaBroker:
    """As the services' make_broker: idempotent producer, acks=all; without their Prometheus
    middleware and with aiokafka's default linger (0 ms)."""
    return KafkaBroker(settings.kafka_bootstrap, client_id=f"shopify-prima-bench-{name}",
                       enable_idempotence=True, acks="all", logger=None)


def _headers(record) -> dict[str, str]:
    """The benchmark's own headers of a consumed record (carried on to its output)."""
    return {k: v.decode() for k, v in (record.headers or ()) if k in (SEQ_HEADER, PRODUCED_AT_HEADER)}


def _check(response, field_name: str, what: str) -> None:
    for entry in getattr(response, field_name, ()):
        if entry[1]:  # (topic, error_code, ...)
            raise RuntimeError(f"{what} {entry[0]}: Kafka error code {entry[1]}")


async def wait_group_stable(admin: AIOKafkaAdminClient, group: str, members: int, timeout: float) -> bool:
    """Until the consumer group is Stable with `members` members (so no rebalance interrupts the
    timed loop), or `timeout` seconds."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        try:
            for response in await admin.describe_consumer_groups([group]):
                for g in response.groups:  # (error_code, group, state, protocol_type, protocol, members, ...)
                    if g[1] == group and g[2] == "Stable" and len(g[5]) >= members:
                        return True
        except KafkaError:
            pass
        await asyncio.sleep(0.1)
    return False


async def output_count(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-bench-count")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def prefill(settings: Settings, topic: str, ids: list[int], bodies: list[bytes]) -> float:
    """Produce every body to the input topic, acknowledged; seconds taken."""
    broker = make_broker(settings, "baseline-prefill")
    await broker.start()
    try:
        t0 = time.perf_counter()
        pending = []
        for seq, (oid, body) in enumerate(zip(ids, bodies)):
            pending.append(await broker.publish(
                body, topic, key=str(oid).encode(), no_confirm=True,
                headers={SEQ_HEADER: str(seq), PRODUCED_AT_HEADER: str(time.time_ns())}))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - t0
    finally:
        await broker.stop()


async def run_loop(settings: Settings, n: int, batch: bool, max_records: int, batch_wait_ms: int, workers: int,
                   timeout: float, seed: int) -> Result:
    runid = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}-{'batch' if batch else 'one'}"
    topic_in, topic_out = f"bench.baseline.in.{runid}", f"bench.baseline.out.{runid}"
    table = f'{SCHEMA}."baseline_{runid.replace("-", "_")}"'
    group = f"bench-baseline-{runid}"
    mode = "batch" if batch else "one at a time"
    handling = (f"batches of up to {max_records} ({batch_wait_ms} ms wait), 1 consumer, one INSERT per batch"
                if batch
                else f"one message per call, {workers} consumer{'s' if workers > 1 else ''} (whole partitions)")

    base = time.time_ns() // 1_000
    ids = [base + i for i in range(n)]
    rng = random.Random(seed)
    bodies = [json.dumps(random_paid_order(oid, SKUS, rng)).encode() for oid in ids]  # as send_webhook encodes
    console.print(f"[bold]Baseline ({mode})[/bold]: {n} messages of {sum(map(len, bodies)) / n:,.0f} bytes "
                  f"on average; topics {topic_in} -> {topic_out}, table {table}")

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="shopify-prima-bench-baseline")
    await admin.start()
    conn = await asyncpg.connect(settings.database_url)
    pool: asyncpg.Pool | None = None
    broker: KafkaBroker | None = None
    try:
        _check(await admin.create_topics(
            [NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in (topic_in, topic_out)]),
            "topic_errors", "creating topic")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(f"""CREATE TABLE {table} (
            seq integer PRIMARY KEY, shopify_order_id bigint NOT NULL, payload bytea NOT NULL,
            produced_at timestamptz NOT NULL, inserted_at timestamptz NOT NULL DEFAULT now())""")
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1 if batch else workers)

        loop = Loop(n)
        release = asyncio.Event()
        broker = make_broker(settings, f"baseline-{runid}")
        out = broker.publisher(topic_out)
        insert_one = (f"INSERT INTO {table} (seq, shopify_order_id, payload, produced_at) VALUES ($1, $2, $3, $4) "
                      "ON CONFLICT (seq) DO NOTHING")
        insert_many = (f"INSERT INTO {table} (seq, shopify_order_id, payload, produced_at) "
                       "SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[], $4::timestamptz[]) "
                       "ON CONFLICT (seq) DO NOTHING")

        if batch:
            @broker.subscriber(topic_in, group_id=group, auto_offset_reset="earliest",
                               ack_policy=AckPolicy.NACK_ON_ERROR, batch=True, max_records=max_records,
                               batch_timeout_ms=batch_wait_ms)
            async def handle_batch(body: list, msg: KafkaMessage) -> None:
                await release.wait()
                got = time.perf_counter()
                records = msg.raw_message if isinstance(msg.raw_message, tuple) else (msg.raw_message,)
                heads = [_headers(r) for r in records]
                seqs = [int(h[SEQ_HEADER]) for h in heads]
                produced = [int(h[PRODUCED_AT_HEADER]) for h in heads]
                await pool.execute(insert_many, seqs, [int(r.key) for r in records], [r.value for r in records],
                                   [datetime.fromtimestamp(p / 1e9, UTC) for p in produced])  # one statement, one commit
                futures = [await out.publish(r.value, key=r.key, headers=h, no_confirm=True)
                           for r, h in zip(records, heads)]
                await asyncio.gather(*futures)  # every output acknowledged before the offsets are committed
                loop.batches.append(len(records))
                for seq, p in zip(seqs, produced):
                    loop.acked(seq, p, got)
        else:
            @broker.subscriber(topic_in, group_id=group, auto_offset_reset="earliest",
                               ack_policy=AckPolicy.NACK_ON_ERROR, max_workers=workers)
            async def handle_one(msg: KafkaMessage) -> None:
                await release.wait()
                got = time.perf_counter()
                record = msg.raw_message
                head = _headers(record)
                seq, produced = int(head[SEQ_HEADER]), int(head[PRODUCED_AT_HEADER])
                await pool.execute(insert_one, seq, int(record.key), record.value,
                                   datetime.fromtimestamp(produced / 1e9, UTC))
                await out.publish(record.value, key=record.key, headers=head)  # returns once acknowledged
                loop.batches.append(1)
                loop.acked(seq, produced, got)

        await broker.start()
        joined = await wait_group_stable(admin, group, 1 if batch else min(workers, PARTITIONS), 60.0)
        if not joined:
            console.print("[yellow]the consumer group was not stable after 60 s; timing anyway[/yellow]")
        prefill_seconds = await prefill(settings, topic_in, ids, bodies)
        console.print(f"produced {n} messages to {topic_in} in {prefill_seconds:.2f} s (not timed); releasing the loop")

        cpu_before, busy_before = cpu_snapshot(), machine_busy_seconds()
        t0 = time.perf_counter()
        release.set()
        try:
            await asyncio.wait_for(loop.done.wait(), timeout)
        except TimeoutError:
            console.print(f"[red]timeout[/red]: {len(loop.latency)} of {n} outputs acknowledged after {timeout:.0f} s")
        cpu_after, busy_after = cpu_snapshot(), machine_busy_seconds()
        elapsed = loop.last_ack - t0 if loop.done.is_set() else None

        # the output topic must hold them all (acknowledged produces; more if some were handled twice)
        outputs = 0
        for _ in range(50):
            outputs = await output_count(settings, topic_out)
            if outputs >= len(loop.latency):
                break
            await asyncio.sleep(0.2)
        await broker.stop()
        broker = None
        rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return Result(mode=mode, handling=handling, n=n, body_bytes=sum(map(len, bodies)) / n,
                      prefill_seconds=prefill_seconds, joined=joined, elapsed=elapsed, loop=loop, rows=rows,
                      outputs=outputs, cpu=(cpu_before, cpu_after, busy_before, busy_after))
    finally:
        if broker is not None:
            await broker.stop()
        if pool is not None:
            await pool.close()
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} RESTRICT")
            except asyncpg.DependentObjectsStillExistError:
                pass  # another run's table is still in it
        finally:
            await conn.close()
            try:
                _check(await admin.delete_topics([topic_in, topic_out]), "topic_error_codes", "deleting topic")
            except (KafkaError, RuntimeError) as exc:
                console.print(f"[yellow]could not delete {topic_in}, {topic_out}: {exc}[/yellow]")
            await admin.close()


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:,.0f}" if values else "-"


def throughput(r: Result) -> str:
    return f"{r.n / r.elapsed:,.0f}" if r.elapsed else "-"


async def run(args: argparse.Namespace) -> int:
    settings = Settings()
    # as the services consume, as far as their settings say (they are being reworked)
    workers = args.baseline_workers or DEFAULT_WORKERS
    max_records = args.baseline_max_records or settings.consumer_batch_size
    batch_wait_ms = settings.consumer_batch_wait_ms
    modes = ([False] if args.baseline else []) + ([True] if args.baseline_batch else [])
    results = [await run_loop(settings, args.orders, batch, max_records, batch_wait_ms, workers, args.timeout,
                              args.seed)
               for batch in modes]

    table = Table(title=f"Baseline: consume -> INSERT -> produce (acks=all, idempotent), {args.orders} messages",
                  header_style="bold",
                  caption="latency from produce to output acknowledged includes the wait in the pre-filled topic")
    table.add_column("figure")
    for r in results:
        table.add_column(r.mode, justify="right")

    def row(name: str, value) -> None:
        table.add_row(name, *(value(r) for r in results))

    row("messages (N)", lambda r: f"{r.n}")
    row("handling", lambda r: r.handling)
    row("message body (mean)", lambda r: f"{r.body_bytes:,.0f} bytes")
    row("handler calls (mean messages each)",
        lambda r: f"{len(r.loop.batches)} ({sum(r.loop.batches) / len(r.loop.batches):,.1f})" if r.loop.batches else "0")
    row("input produced beforehand in (not timed)", lambda r: f"{r.prefill_seconds:.2f} s")
    row("consumer group stable before the clock", lambda r: "yes" if r.joined else "no (rebalances inside)")
    row("outputs acknowledged", lambda r: f"{len(r.loop.latency)} / {r.n}")
    row("time (release -> last output acknowledged)", lambda r: f"{r.elapsed:.2f} s" if r.elapsed else "-")
    row("throughput", lambda r: f"{throughput(r)} msg/s")
    row("latency produced -> output acked p50 / p90 / p99 / max (ms)",
        lambda r: (lambda v: f"{ms(v, 50)} / {ms(v, 90)} / {ms(v, 99)} / {ms(v, 100)}")(sorted(r.loop.latency.values())))
    row("  in the loop (handler called -> output acked) p50/p99/max ms",
        lambda r: (lambda v: f"{ms(v, 50)} / {ms(v, 99)} / {ms(v, 100)}")(sorted(r.loop.in_loop)))
    row("rows in the table", lambda r: f"{r.rows} / {r.n}")
    row("messages in the output topic", lambda r: f"{r.outputs} / {r.n}")
    row("handled twice (redelivered)", lambda r: f"{r.loop.handled_again}")
    console.print(table)

    for r in results:
        before, after, busy_before, busy_after = r.cpu
        print_cpu(before, after, busy_before, busy_after, r.elapsed or 0.0, what=f"the baseline ({r.mode})")
    print_machine()

    problems = 0
    for r in results:
        v = sorted(r.loop.latency.values())
        console.print(f"[bold]baseline ({r.mode}): {throughput(r)} msg/s, latency p50 {ms(v, 50)} ms, "
                      f"p99 {ms(v, 99)} ms[/bold]")
        if len(r.loop.latency) < r.n or r.rows < r.n or r.outputs < r.n:
            problems += 1
            console.print(f"[red]baseline ({r.mode}) incomplete[/red]: {len(r.loop.latency)} acknowledged, "
                          f"{r.rows} rows, {r.outputs} outputs of {r.n}")
    return 1 if problems else 0
