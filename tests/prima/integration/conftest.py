"""What the OM link integration tests share: the Prima sandbox served in-process on a scratch
database of the module's own (`sandbox_url`), and a client of it reset before each test, its
fault switches cleared after (`sandbox`). A module with other needs defines its own."""

from __future__ import annotations

import httpx
import pytest

from sandboxes.prima.app import create_app
from tests.prima.omlink_orders import SANDBOX_KEY
from tests.support import scratch_database


@pytest.fixture(scope="module")
async def sandbox_url(request, database_url, serve_app):
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    async with scratch_database(database_url, name, migrate=False) as url:
        with serve_app(create_app(url, SANDBOX_KEY), "the Prima sandbox") as base_url:
            yield base_url


@pytest.fixture
async def sandbox(sandbox_url):
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        assert (await client.post("/_sandbox/reset", params={"items": "true", "stock": "true"})).status_code == 200
        yield client
        await client.delete("/_sandbox/faults")
