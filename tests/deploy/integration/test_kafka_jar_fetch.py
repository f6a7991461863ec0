"""deploy/local/kafka.sh fetches the broker's jars with mvn; a fetch that fails once (it happened
in a CI run: mvn exited non-zero with no output) is tried again, so `make test` does not fail on a
transient failure. Here mvn is a wrapper that fails on its first call, then runs the real mvn: the
broker still starts (on ports and a state directory of its own), and a mvn that always fails ends
in a clear error after three attempts."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

KAFKA_SH = Path(__file__).resolve().parents[3] / "deploy" / "local" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_mvn(bin_dir: Path, fail_first: int) -> Path:
    """An `mvn` on PATH that fails its first `fail_first` calls, then runs the real one."""
    real = shutil.which("mvn")
    assert real, "mvn is needed (the local stack installs it)"
    count = bin_dir / "calls"
    script = bin_dir / "mvn"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'n=$(cat "{count}" 2>/dev/null || echo 0); echo $((n + 1)) >"{count}"\n'
        f'if (( n < {fail_first} )); then exit 1; fi\n'
        f'exec "{real}" "$@"\n')
    script.chmod(0o755)
    return count


def kafka_sh(state: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SHOPIFY_PRIMA_STATE_DIR": str(state),
           "KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_HEAP": "256m"}
    return subprocess.run([str(KAFKA_SH), *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_jar_fetch_that_fails_once_is_tried_again_and_the_broker_starts(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    calls = fake_mvn(bin_dir, fail_first=1)
    try:
        started = kafka_sh(state, bin_dir, "start")
        assert started.returncode == 0, started.stderr[-3000:]
        assert "attempt 1" in started.stderr and "ready: bootstrap" in started.stderr
        assert int(calls.read_text()) >= 2  # the failed fetch, then the one that worked (and the tools')
    finally:
        kafka_sh(state, bin_dir, "stop")


def test_a_fetch_that_keeps_failing_ends_in_a_clear_error_after_three_attempts(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    calls = fake_mvn(bin_dir, fail_first=99)
    started = kafka_sh(state, bin_dir, "start")
    assert started.returncode != 0
    assert "could not fetch the Kafka jars in 3 attempts" in started.stderr
    assert int(calls.read_text()) == 3
    assert not (state / "kafka" / "lib").exists()  # nothing that looks like a complete fetch
