"""Stock from OM link snapshots: one full availability pass over a large catalogue (issue 15).

    python -m benchmarks.omlink_availability [--skus 100000] [--ranges 20] [--changed 0.01]
                                             [--kafka 127.0.0.1:29092] [--keep]

What runs for real: the OM link adapter (services/prima/omlink/adapter.py: the request documents,
reading each answer with lxml, the SKU matrix naming each row) and the availability feed
(services/prima/omlink/availability_feed.py: the compare, the facts, Kafka through a FastStream
broker with acks=all, the snapshot in PostgreSQL). What is generated: Prima. The adapter's SOAP
transport is replaced by `GeneratedPrima`, which answers each ProductAvailableToSell request with
the answer document Prima would send for the range (the sandbox's shape), built with lxml from a
generated catalogue: `--skus` items of `--skus`/20 products with 5 colours x 4 sizes each, split
into `--ranges` product ranges. No HTTP and no zeep: a real Prima's network time and the SOAP
envelope are not in the figures.

Where: a throwaway database on the stack's PostgreSQL (deploy/local/stack.env; migrated to head,
dropped at the end unless --keep), and throwaway topics on the tests' own Kafka broker
(127.0.0.1:29092; start it with `make test-kafka` or any integration test run), deleted at the
end. Nothing of the running stack is touched.

Run: pass 1 on an empty snapshot (every SKU published, with its item fact), then `--changed` of
the SKUs get a new level and pass 2 runs (only those published). Both again with tracemalloc on,
under a second snapshot prefix, for the peak of Python memory allocated during each pass (traced
separately: tracing slows the timed passes). Printed: seconds per pass, facts published, pages,
peak traced memory, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
import tracemalloc
import uuid
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from lxml import etree

from benchmarks.orders import machine
from services.platform import migrations
from services.platform.kafka import make_broker, publish_all
from services.platform.settings import Settings, use_env_file
from services.prima.omlink.adapter import OmLinkAdapter
from services.prima.omlink.availability_feed import AvailabilityFeed
from services.prima.omlink.config import OmLinkConfig

STACK_ENV = Path(__file__).resolve().parents[1] / "deploy" / "local" / "stack.env"
COLOURS = ("BLK", "NVY", "RED", "GRN", "WHT")
SIZES = ("S", "M", "L", "XL")
PER_PRODUCT = len(COLOURS) * len(SIZES)


class GeneratedPrima:
    """The OM link transport of a Prima with a generated catalogue: ProductAvailableToSell only."""

    def __init__(self, skus: int, seed: int = 15) -> None:
        self.products = [f"P{n:06d}" for n in range(-(-skus // PER_PRODUCT))]
        self.skus = skus
        rng = random.Random(seed)
        self.levels = [rng.randint(-2, 500) for _ in range(skus)]  # by item number
        self.rng = rng
        self.seconds = 0.0  # spent making answers: Prima's time, not the integration's

    def ranges(self, count: int) -> list[dict[str, str]]:
        size = -(-len(self.products) // count)
        chunks = [self.products[i:i + size] for i in range(0, len(self.products), size)]
        return [{"product_from": c[0], "product_to": c[-1]} for c in chunks]

    def change(self, share: float) -> int:
        changed = self.rng.sample(range(self.skus), max(1, int(self.skus * share)))
        for n in changed:
            self.levels[n] += self.rng.choice((-3, -1, 1, 5))
        return len(changed)

    async def call(self, document: str) -> str:
        started = time.perf_counter()
        try:
            return self._answer(document)
        finally:
            self.seconds += time.perf_counter() - started

    def _answer(self, document: str) -> str:
        data = etree.fromstring(document.encode("ISO-8859-1")).find("Data")
        low, high = data.get("ProductFrom", ""), data.get("ProductTo", "")
        answer = etree.Element("Data")
        for p, product in enumerate(self.products):
            if (low and product < low) or (high and product > high):
                continue
            for v in range(PER_PRODUCT):
                n = p * PER_PRODUCT + v
                if n >= self.skus:
                    break
                etree.SubElement(answer, "sku", Product=product, MtrxCode1=COLOURS[v // len(SIZES)],
                                 MtrxCode2=SIZES[v % len(SIZES)], AvailableQuantity=str(self.levels[n]))
        root = etree.Element("Response", RequestType="ProductAvailableToSell", RequestStatus="OK")
        root.append(answer)
        return etree.tostring(root, encoding="ISO-8859-1", xml_declaration=True).decode("ISO-8859-1")

    async def aclose(self) -> None:
        pass


class Kafka:
    """publish_all through the broker, timed (the feed waits for every acknowledgement)."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.seconds = 0.0

    async def __call__(self, out) -> None:
        started = time.perf_counter()
        try:
            await publish_all(self.broker, out)
        finally:
            self.seconds += time.perf_counter() - started


async def one_pass(feed: AvailabilityFeed, prima: GeneratedPrima, kafka: Kafka, *,
                   traced: bool) -> tuple[float, int, int, int | None, float, float]:
    prima.seconds = kafka.seconds = 0.0
    if traced:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    result = await feed.poll_once()
    seconds = time.perf_counter() - started
    peak = None
    if traced:
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    if not result.ok:
        raise SystemExit(f"the pass failed: {result.outcome}: {result.error}")
    return seconds, result.published, result.pages, peak, prima.seconds, kafka.seconds


async def run(args: argparse.Namespace) -> None:
    use_env_file(STACK_ENV)
    settings = Settings().model_copy(update={"kafka_bootstrap": args.kafka})
    name = f"bench_omlink_{uuid.uuid4().hex[:8]}"
    admin_db = await asyncpg.connect(settings.database_url)
    await admin_db.execute(f'CREATE DATABASE "{name}"')
    url = settings.database_url.rsplit("/", 1)[0] + f"/{name}"
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=args.kafka)
    topics = [f"bench.omlink-availability.{name}", f"bench.omlink-dead-letters.{name}"]
    made: list[str] = []
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        await kafka_admin.start()
        await kafka_admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics])
        made += topics
        prima = GeneratedPrima(args.skus)
        config = OmLinkConfig.model_validate({
            "instance_url": "http://prima.generated/wsa/wsa1",
            "sku_matrix": {"pattern": "{Product}-{MtrxCode1}-{MtrxCode2}"},
            "availability_ranges": prima.ranges(args.ranges)})
        broker = make_broker(settings, "omlink-availability-bench")
        await broker.start()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        rows = []
        try:
            adapter = OmLinkAdapter(config, soap=prima)
            kafka = Kafka(broker)
            for label, traced in (("timed", False), ("traced", True)):
                feed = AvailabilityFeed(settings, pool, adapter, kafka, topic=topics[0],
                                        dead_letter_topic=topics[1], snapshot_prefix=f"{label}/")
                first = await one_pass(feed, prima, kafka, traced=traced)
                changed = prima.change(args.changed)
                second = await one_pass(feed, prima, kafka, traced=traced)
                rows.append((label, first, second, changed))
        finally:
            await pool.close()
            await broker.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"OM link availability: {args.skus} SKUs in {len(config.availability_ranges)} ranges "
              f"(~{args.skus // len(config.availability_ranges)} SKUs per page), generated Prima "
              "(adapter and feed real; no HTTP/SOAP)")
        for label, first, second, changed in rows:
            for name_, (seconds, published, pages, peak, answering, publishing) in (
                    ("pass 1 (empty snapshot)", first), (f"pass 2 ({changed} SKUs changed)", second)):
                memory = f", peak traced {peak / 2**20:.1f} MiB" if peak is not None else ""
                print(f"  {label:6} {name_:28} {seconds:7.2f} s  {published:7d} facts  {pages} pages  "
                      f"(generated Prima answering {answering:.2f} s, Kafka publish+ack {publishing:.2f} s){memory}")
        print(f"  process peak RSS {rss:.0f} MiB")
        for key, value in machine().items():
            print(f"  {key}: {value}")
    finally:
        if made:
            await kafka_admin.delete_topics(made)
        await kafka_admin.close()
        if not args.keep:
            await admin_db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--ranges", type=int, default=20)
    parser.add_argument("--changed", type=float, default=0.01, help="share of SKUs changed before pass 2")
    parser.add_argument("--kafka", default="127.0.0.1:29092", help="the tests' own broker, never the stack's")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
