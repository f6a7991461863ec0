"""How every process runs, in one place: settings, logging, the /metrics endpoint, one signal
handler, dependencies started with backoff, the singleton lock, and a graceful stop.

A worker is an async `main(worker)` function; `run_worker` gives it a `Worker` (its settings and
the stop event that SIGTERM or SIGINT sets) and returns when it does:

    async def main(worker: Worker) -> None:
        async with worker.database() as pool, worker.broker() as broker:
            ...
            await worker.stopped()

    if __name__ == "__main__":
        run_worker("order-decider", main, metrics_port=lambda s: s.order_decider_metrics_port)

HTTP processes (the webhook ingest, the ops API) run under uvicorn, which handles the signals
itself (`run_http`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg

from services.platform.metrics import serve_metrics
from services.platform.settings import Settings, get_settings

T = TypeVar("T")
log = logging.getLogger("shopify_prima.runner")

LOCK_POLL_SECONDS = 5.0
START_BACKOFF_INITIAL_SECONDS = 0.5
START_BACKOFF_MAX_SECONDS = 15.0


def configure(metrics_port: Callable[[Settings], int] | None = None) -> Settings:
    """Settings (a bad value stops the process with the variable named), logging, and for a
    worker the /metrics endpoint."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "httpx"):  # a line per request or per rebalance step is noise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    limit_repeats()
    if metrics_port is not None:
        serve_metrics(metrics_port(settings), settings.metrics_host)
    return settings


class RepeatLimit(logging.Filter):
    """Lets a logger's message (by its template, before the arguments are put in) through at most
    once per `seconds` in this process; the next one let through says how many were held back.

    Why: aiokafka logs every reconnect attempt and every failed produce request, about every
    100 ms per pending batch, so ten seconds of Kafka downtime wrote ~110,000 lines to the
    ingest's log (issue 8, defect 10). With this, an outage writes a few lines per message."""

    def __init__(self, seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 max_templates: int = 1000) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock = clock
        self.max_templates = max_templates
        self.suppressed = 0  # lines held back since the process started
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.seconds:
                self._held[key] = self._held.get(key, 0) + 1
                self.suppressed += 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
            if len(self._last) > self.max_templates:  # bounded memory: forget the oldest
                oldest = min(self._last, key=self._last.__getitem__)
                self._last.pop(oldest)
                self._held.pop(oldest, None)
        if held and last is not None:  # no "%" added: the record's arguments still fit its template
            record.msg = f"{record.msg} [{held} more like this held back in the last {now - last:.0f}s]"
        return True


LOG_REPEAT_SECONDS = 30.0
NOISY_LIBRARIES = ("aiokafka", "faststream")
_repeat_limit: RepeatLimit | None = None


def limit_repeats(prefixes: tuple[str, ...] = NOISY_LIBRARIES, seconds: float = LOG_REPEAT_SECONDS) -> RepeatLimit:
    """Put one RepeatLimit on every logger of these libraries (idempotent). A logger's filter
    sees every record created on that logger, whichever handler writes it; the libraries'
    module loggers exist once they are imported."""
    global _repeat_limit
    import aiokafka  # noqa: F401
    import aiokafka.admin  # noqa: F401

    if _repeat_limit is None:
        _repeat_limit = RepeatLimit(seconds)
    names = set(prefixes) | {n for n in list(logging.root.manager.loggerDict)
                             if any(n.startswith(p + ".") for p in prefixes)}
    for name in names:
        logger = logging.getLogger(name)
        if _repeat_limit not in logger.filters:
            logger.addFilter(_repeat_limit)
    return _repeat_limit


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True when stopping."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
        return True
    except TimeoutError:
        return False


class Outage:
    """Logs a dependency's outage once when it starts and once when it ends, never per attempt."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self.what = what
        self.log = logger
        self.since: float | None = None
        self.attempts = 0

    def failed(self, exc: BaseException) -> None:
        self.attempts += 1
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning("%s unavailable (%s: %s); retrying with backoff, logged again when it is back",
                             self.what, type(exc).__name__, exc)

    def recovered(self) -> None:
        if self.since is not None:
            self.log.warning("%s available again after %.1fs (%d attempts)", self.what,
                             time.monotonic() - self.since, self.attempts)
        self.since, self.attempts = None, 0

    @property
    def down(self) -> bool:
        return self.since is not None


async def every(stop: asyncio.Event, interval_seconds: float, what: str, job: Callable[[], Awaitable[object]],
                logger: logging.Logger = log) -> None:
    """A sweep: `job` every `interval_seconds` until `stop`; a failure (PostgreSQL down) is logged
    once per outage (Outage `what`) and the sweep goes on."""
    trouble = Outage(what, logger)
    while not await wait_or_stop(stop, interval_seconds):
        try:
            await job()
        except Exception as exc:  # noqa: BLE001
            trouble.failed(exc)
        else:
            trouble.recovered()


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Exponential: initial, 2 x initial, 4 x initial ... at most `cap` (attempt counts from 1)."""
    return min(cap, initial * 2 ** max(0, attempt - 1))


async def until_up(what: str, start: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
    """Call `start` until it succeeds (Kafka or PostgreSQL not up yet at start-up is waited for,
    not a crash); None if `stop` is set first."""
    outage = Outage(what)
    while not stop.is_set():
        try:
            result = await start()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            outage.failed(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. aiokafka's KafkaConnectionError
            if not _is_connection_error(exc):
                raise
            outage.failed(exc)
        else:
            outage.recovered()
            return result
        if await wait_or_stop(stop, backoff(outage.attempts, START_BACKOFF_INITIAL_SECONDS,
                                            START_BACKOFF_MAX_SECONDS)):
            return None
    return None


async def start_broker(broker, stop: asyncio.Event) -> bool:
    """Start a FastStream broker once Kafka answers (waited for with backoff, logged once); a
    half-started broker is stopped before the next try. False if `stop` came first."""
    async def start():
        try:
            await broker.start()
        except BaseException:
            try:
                await broker.stop()
            except Exception:  # noqa: BLE001
                pass
            raise
        return broker

    return await until_up("Kafka", start, stop) is not None


def _is_connection_error(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    return isinstance(exc, (KafkaConnectionError, KafkaError))


@dataclass
class Worker:
    """What a worker's main function gets: its settings, its name and the stop event."""

    name: str
    settings: Settings
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def stopped(self) -> None:
        await self.stop.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when stopping."""
        return await wait_or_stop(self.stop, seconds)

    @asynccontextmanager
    async def database(self, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
        """A connection pool, created once PostgreSQL answers."""
        pool = await until_up("PostgreSQL", lambda: asyncpg.create_pool(
            self.settings.database_url, min_size=1, max_size=max_size), self.stop)
        if pool is None:
            raise asyncio.CancelledError
        try:
            yield pool
        finally:
            await pool.close()

    @asynccontextmanager
    async def broker(self, broker):  # FastStream KafkaBroker (services.platform.kafka.make_broker)
        """Start a FastStream broker (its publishers and subscribers) once Kafka answers."""
        if not await start_broker(broker, self.stop):
            await broker.stop()
            raise asyncio.CancelledError
        try:
            yield broker
        finally:
            await broker.stop()

    async def exclusive(self, pool: asyncpg.Pool, lock: str, body: Callable[[], Awaitable[None]],
                        check_seconds: float = 2.0) -> None:
        """Run `body` while holding the advisory lock `lock` (one such process at a time; the
        others stand by), until stopped. The lock lives as long as its PostgreSQL session: when
        that session dies (PostgreSQL restarted), `body` is cancelled, and once PostgreSQL is back
        the lock is taken again and `body` started again from what it stored."""
        outage = Outage(f"{self.name}: PostgreSQL (lock {lock})")
        while not self.stop.is_set():
            try:
                async with pool.acquire() as conn:
                    announced = False
                    while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
                        if not announced:
                            log.info("%s: another process holds the lock %r; standing by", self.name, lock)
                            announced = True
                        if await self.sleep(LOCK_POLL_SECONDS):
                            return
                    outage.recovered()
                    task = asyncio.create_task(body())
                    try:
                        while not task.done():
                            await asyncio.wait([task], timeout=check_seconds)
                            if not task.done():
                                await conn.fetchval("SELECT 1")  # the session (and the lock) still alive?
                    finally:
                        if not task.done():
                            task.cancel()
                            await asyncio.gather(task, return_exceptions=True)
                    await task  # its exception, if it failed on its own
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
                    return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                outage.failed(exc)
                if await self.sleep(backoff(outage.attempts, START_BACKOFF_INITIAL_SECONDS, START_BACKOFF_MAX_SECONDS)):
                    return

    @asynccontextmanager
    async def singleton(self, pool: asyncpg.Pool, lock: str) -> AsyncIterator[bool]:
        """Hold a PostgreSQL advisory lock named `lock` for the block: one such process runs at
        a time, the others stand by until it stops. Yields False if stopped while waiting."""
        async with pool.acquire() as conn:
            announced = False
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
                if not announced:
                    log.info("%s: another process holds the lock %r; standing by", self.name, lock)
                    announced = True
                if await self.sleep(LOCK_POLL_SECONDS):
                    yield False
                    return
            try:
                yield True
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass  # the connection is gone, and the lock with it


def run_worker(name: str, main: Callable[[Worker], Awaitable[None]],
               metrics_port: Callable[[Settings], int] | None = None) -> None:
    """Run a worker until SIGTERM or SIGINT (the one signal handler), then let it stop cleanly."""
    settings = configure(metrics_port)

    async def amain() -> None:
        worker = Worker(name, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop.set)
        log.info("%s starting", name)
        try:
            await main(worker)
        except asyncio.CancelledError:
            if not worker.stop.is_set():
                raise
        log.info("%s stopped", name)

    asyncio.run(amain())


def run_http(app_factory: Callable[[Settings], object], host: Callable[[Settings], str],
             port: Callable[[Settings], int]) -> None:
    """Serve an HTTP app (FastAPI) with uvicorn, which handles SIGTERM and SIGINT itself."""
    import uvicorn

    settings = configure()
    uvicorn.run(app_factory(settings), host=host(settings), port=port(settings), log_level="warning",
                timeout_keep_alive=5)
