"""Kafka plumbing in one place: the FastStream broker every service uses, and the codec."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from pydantic import BaseModel

from services.config import Settings


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
