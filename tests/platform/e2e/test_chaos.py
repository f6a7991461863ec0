"""The short chaos run (benchmarks/chaos.py --short) through the running stack: a few hundred
paid orders with duplicated, reordered and late deliveries, kill -9 of every process in turn, a
Kafka and a PostgreSQL restart, Prima failing and then down, Shopify throttled and failing,
while Prima's stock changes; then nothing lost, nothing doubled, every level converged and no
exception left, without any operator command. `make test` runs it last (marker chaos)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.chaos


def test_a_short_chaos_run_loses_nothing_doubles_nothing_and_needs_no_operator(stack):
    result = subprocess.run([sys.executable, "-m", "benchmarks.chaos", "--short"], capture_output=True, text=True,
                            timeout=1800)
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert '"processes_killed": 10' in result.stdout  # every one of benchmarks/chaos.py PROCESSES
    assert '"lost": 0' in result.stdout and '"doubled": 0' in result.stdout and '"manual_actions": 0' in result.stdout
