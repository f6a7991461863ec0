"""How every process starts: settings, logging, and (for workers) the /metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from faststream import FastStream

from services.config import Settings, get_settings
from services.metrics import serve_metrics


def start(metrics_port: Callable[[Settings], int] | None = None) -> Settings:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if metrics_port is not None:
        serve_metrics(metrics_port(settings), settings.metrics_host)
    return settings


def run_faststream_worker(build: Callable[[Settings], FastStream], metrics_port: Callable[[Settings], int]) -> None:
    settings = start(metrics_port)
    asyncio.run(build(settings).run())


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False
