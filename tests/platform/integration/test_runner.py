"""The worker runner on real PostgreSQL: a singleton's lock dies with its session (PostgreSQL
restarted, or the session killed); the work is then stopped, the lock taken again once the
database answers, and the work started again (issue 8, defect 10: processes ride out a
PostgreSQL restart by themselves, and never two hold the lock)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.platform.runner import Worker


async def lock_holders(pool: asyncpg.Pool, lock: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = (hashtext($1)::bigint & 4294967295)",
        lock)
    return [r["pid"] for r in rows]


async def test_work_under_a_lock_whose_session_dies_is_restarted_once_the_lock_is_taken_again(
        settings, scratch_database):
    pool = await asyncpg.create_pool(scratch_database, min_size=1, max_size=3)
    admin = await asyncpg.connect(scratch_database)
    worker = Worker("test", settings.model_copy(update={"database_url": scratch_database}))
    lock = f"test-lock-{uuid.uuid4().hex[:8]}"
    starts: list[int] = []
    cancelled: list[int] = []

    async def body() -> None:
        starts.append(len(starts) + 1)
        try:
            await worker.stop.wait()
        except asyncio.CancelledError:
            cancelled.append(starts[-1])
            raise

    task = asyncio.create_task(worker.exclusive(pool, lock, body, check_seconds=0.1))
    try:
        for _ in range(100):
            if starts and await lock_holders(admin, lock):
                break
            await asyncio.sleep(0.05)
        (holder,) = await lock_holders(admin, lock)
        await admin.execute("SELECT pg_terminate_backend($1)", holder)  # as a PostgreSQL restart would
        for _ in range(200):
            if len(starts) == 2 and await lock_holders(admin, lock):
                break
            await asyncio.sleep(0.05)
        assert cancelled == [1], "the work stopped when its lock went away"
        assert starts == [1, 2], "and started again under the lock taken again"
        (again,) = await lock_holders(admin, lock)
        assert again != holder
    finally:
        worker.stop.set()
        await asyncio.wait_for(task, 10)
        assert await lock_holders(admin, lock) == []  # released at the stop
        await admin.close()
        await pool.close()
