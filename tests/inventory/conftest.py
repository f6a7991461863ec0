"""What every test of this flow shares: each state a test drives an aggregate into is checked to
survive a snapshot (tests/snapshot_check.py); a state that does not fails the test that made it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.snapshot_check import SnapshotCheck


@pytest.fixture(autouse=True)
def every_state_survives_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> Iterator[SnapshotCheck]:
    check = SnapshotCheck()
    check.install(monkeypatch)
    yield check
    check.verify()
