"""The catalogue reader's runs (inventory.sync_runs) on the inventory integration tests' throwaway
database: a run a reader was killed in the middle of does not stay "reading" for ever (defect 9)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.platform.runner import Worker
from services.shopify.catalog_reader import INTERRUPTED, CatalogReader, request_run

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(scratch_url):
    pool = await asyncpg.create_pool(scratch_url, min_size=1, max_size=3)
    await pool.execute("DELETE FROM inventory.sync_runs")
    yield pool
    await pool.execute("DELETE FROM inventory.sync_runs")
    await pool.close()


async def add_run(pool: asyncpg.Pool, trigger: str, status: str, started: bool = True) -> uuid.UUID:
    run_id = await request_run(pool, trigger)
    if status != "requested" or started:
        await pool.execute("UPDATE inventory.sync_runs SET status = $2, started_at = CASE WHEN $3 THEN now() END "
                           "WHERE run_id = $1", run_id, status, started)
    return run_id


async def test_a_run_left_reading_by_a_dead_reader_fails_and_an_operators_is_asked_again(pool, settings):
    """Given runs a reader was killed in (one an operator asked for, one the schedule's), when a
    reader starts (holding the reader's lock: no live reader owns them), then both are failed as
    interrupted, the operator's is requested again, and the rest is left as it is."""
    operators = await add_run(pool, "operator:alice", "reading")
    scheduled = await add_run(pool, "schedule", "reading")
    started_request = await add_run(pool, "operator:bob", "requested", started=True)
    waiting = await add_run(pool, "operator:carol", "requested", started=False)
    done = await add_run(pool, "schedule", "published")

    worker = Worker("catalog-reader-test", settings)
    worker.stop.set()  # take the lock, recover, and stop before reading anything
    reader = CatalogReader(settings.model_copy(update={"inventory_full_sync_interval_seconds": 0}), pool,
                           admin=None, publish=None, http=None)
    await reader.serve(worker)

    rows = {r["run_id"]: r for r in await pool.fetch("SELECT * FROM inventory.sync_runs")}
    for run_id in (operators, scheduled, started_request):
        assert (rows[run_id]["status"], rows[run_id]["error"]) == ("failed", INTERRUPTED)
        assert rows[run_id]["finished_at"] is not None
    assert rows[waiting]["status"] == "requested" and rows[done]["status"] == "published"
    again = sorted(r["trigger"] for run_id, r in rows.items()
                   if run_id not in (operators, scheduled, started_request, waiting, done))
    assert again == ["operator:alice", "operator:bob"]  # the schedule's comes round by itself
    assert all(r["status"] == "requested" and r["started_at"] is None for r in rows.values()
               if r["trigger"] in ("operator:alice", "operator:bob") and r["run_id"] not in (operators,
                                                                                             started_request))

    # recovered once: nothing more the next time
    assert await reader.recover_interrupted() == []
    assert await reader.next_run() == waiting  # the oldest request first
