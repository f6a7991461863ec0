"""An example consumer of shopify-prima.order-events.v1, as another team would write one: plain
aiokafka and the published JSON Schema, nothing of this project's code.

    pip install aiokafka jsonschema-rs
    python examples/order_events_consumer.py --bootstrap 127.0.0.1:19092 --group my-team

What the contract says (contracts/asyncapi.yaml) and what this does about it:
- every message is one order's domain event, keyed by the Shopify order id: one order's events
  come in the order they were recorded (one partition per key);
- delivery is AT LEAST ONCE: the same event may arrive twice (a relay that resends after a
  restart, a rebalance before a commit). Its `event_id` is stable across resends, so this
  consumer deduplicates on it;
- each message is validated against the published schema
  (contracts/schemas/shopify-prima.order-events.v1.json); one that does not validate is reported
  on stderr with its position and skipped, so it never stops the partition behind it;
- offsets are committed only after the events of a poll were handled: a crash re-reads them,
  and the dedupe makes that harmless.

`Seen` keeps the ids in memory (the last `capacity` of them): enough for resends, which come
close together. A consumer with effects that must survive a restart keeps the ids in its own
database, in the transaction that records the effect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
from aiokafka import AIOKafkaConsumer

TOPIC = "shopify-prima.order-events.v1"
SCHEMA = Path(__file__).resolve().parents[1] / "contracts" / "schemas" / f"{TOPIC}.json"
log = logging.getLogger("order_events_consumer")


class Seen:
    """The event ids handled so far (the newest `capacity`), and how often each came again."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.ids: OrderedDict[str, None] = OrderedDict()
        self.capacity = capacity
        self.repeats: Counter[str] = Counter()

    def first_time(self, event_id: str) -> bool:
        if event_id in self.ids:
            self.repeats[event_id] += 1
            return False
        self.ids[event_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)
        return True


def line(event: dict[str, Any]) -> str:
    return (f"order {event['shopify_order_id']} v{event['aggregate_version']} {event['event_type']} "
            f"(event {event['event_id']}, at {event['timestamp']})")


async def consume(bootstrap: str, group: str, handle: Callable[[dict[str, Any]], Any] = lambda e: print(line(e)),
                  *, stop: Callable[[], bool] = lambda: False, seen: Seen | None = None,
                  schema: Path = SCHEMA) -> Seen:
    """Handle each new, valid event once (`handle(event)`), until `stop()` is true (asked after
    every poll, at least twice a second). Returns what it has seen."""
    validator = jsonschema_rs.validator_for(json.loads(schema.read_text()), validate_formats=True)
    seen = seen if seen is not None else Seen()
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop():
            polled = await consumer.getmany(timeout_ms=500)
            for records in polled.values():
                for record in records:
                    try:
                        event = json.loads(record.value)
                        validator.validate(event)
                    except (ValueError, jsonschema_rs.ValidationError) as exc:
                        log.error("%s[%s]@%s does not match the published schema, skipped: %s",
                                  record.topic, record.partition, record.offset, str(exc)[:300])
                        continue
                    if seen.first_time(event["event_id"]):
                        handle(event)
            if polled:
                await consumer.commit()  # only after every event of the poll was handled
    finally:
        await consumer.stop()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=f"Print one line per new event of {TOPIC}.")
    parser.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap servers")
    parser.add_argument("--group", required=True, help="your team's own consumer group")
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="the published JSON Schema of the topic")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    async def run() -> None:
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
        await consume(args.bootstrap, args.group, stop=stopping.is_set, schema=args.schema)

    asyncio.run(run())


if __name__ == "__main__":
    main()
