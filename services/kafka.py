"""Kafka plumbing in one place: the FastStream broker every service uses, and the codec."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError

from services.config import Settings
from services.metrics import UNDECODABLE

T = TypeVar("T")
log = logging.getLogger("shopify_prima.kafka")


def make_broker(settings: Settings, service: str) -> KafkaBroker:
    """Idempotent producer with acks=all: a publish returns only once every in-sync replica has
    the message, and a retried send is never written twice."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"shopify-prima-{service}",
        enable_idempotence=True,
        acks="all",
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=service)],
        logger=None,
    )


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def headers_for(message: BaseModel, **extra: Any) -> dict[str, str]:
    headers = {"message_type": str(getattr(message, "message_type", type(message).__name__))}
    headers.update({k: str(v) for k, v in extra.items()})
    return headers


def durable_subscriber(broker: KafkaBroker, settings: Settings, topic: str, group: str):
    """A consumer that commits an offset only after its handler returned: an exception (say the
    database is down) nacks the message, which is delivered again. One consumer per partition,
    up to `consumer_workers`, so messages of one key are still handled in order."""
    return broker.subscriber(
        topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
        max_workers=settings.consumer_workers,
    )


def decode(parse: Callable[[bytes], T], msg: KafkaMessage) -> T | None:
    """Parse a message body; an undecodable one is logged with its position and skipped (it can
    never succeed, and blocking its partition would stop every order behind it)."""
    try:
        return parse(msg.body)
    except ValidationError as exc:
        record = msg.raw_message
        log.error("undecodable message on %s[%s] at offset %s: %s; body %r",
                  record.topic, record.partition, record.offset, exc, msg.body[:500])
        UNDECODABLE.labels(topic=record.topic).inc()
        return None
