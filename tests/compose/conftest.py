"""tests/compose: the stack as Docker users run it, started by `make test-compose`
(deploy/compose/test.sh: docker-compose.yml + deploy/compose/offline.yml, ports on 127.0.0.1).

These tests need that stack, which only deploy/compose/test.sh builds and starts, so they are
collected only when it runs them: it sets TEST_COMPOSE_STACK=1. Anywhere else (`make test`, a
plain `pytest`) this folder collects nothing at all: no test is skipped, none fails for want of
a stack. `pytest tests/compose` on its own therefore reports "no tests ran" (exit 5)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.compose.api import Api
from tests.compose.stack import ComposeStack

collect_ignore_glob = [] if os.environ.get("TEST_COMPOSE_STACK") else ["test_*.py"]


@pytest.fixture(scope="session")
def compose() -> ComposeStack:
    """The running compose stack: its command, resolved configuration and published addresses."""
    return ComposeStack.from_environment()


@pytest.fixture
async def api(compose: ComposeStack) -> AsyncIterator[Api]:
    """The stack's HTTP surfaces; the sandboxes' fault switches are off before and after."""
    async with compose.http() as http:
        api = Api(compose, http)
        await api.clear_faults()
        yield api
        await api.clear_faults()
