"""The standard tools another team checks the published contracts with, run as that team would:
the official AsyncAPI CLI (`asyncapi validate`) and ajv in strict mode (Ajv2020, the standard
formats; tools/contracts/ajv-check.mjs). Both are pinned in tools/contracts/package-lock.json and
installed by `make test` / `make unit` (`npm ci --prefix tools/contracts`). A test that needs them
fails, never skips, when they are missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "contracts"
ASYNCAPI_CLI = TOOLS / "node_modules" / ".bin" / "asyncapi"
AJV_CHECK = TOOLS / "ajv-check.mjs"
INSTALL = "run `make unit` or `npm ci --prefix tools/contracts --ignore-scripts` (needs Node.js 20+ and npm)"


def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail(f"node is not on PATH: the contract checks need Node.js 20 or later; {INSTALL}")
    return found


def require_tools() -> None:
    node()
    missing = [str(p.relative_to(ROOT)) for p in (ASYNCAPI_CLI, TOOLS / "node_modules" / "ajv" / "package.json",
                                                  TOOLS / "node_modules" / "ajv-formats" / "package.json")
               if not p.exists()]
    if missing:
        pytest.fail(f"the contract tools are not installed ({', '.join(missing)} missing): {INSTALL}")


def asyncapi_validate(document: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`asyncapi validate <document>`, failing on warnings too, its diagnostics as JSON. The CLI's
    usage analytics are off (CI=true, and a config file of its own that says so), so it neither
    calls out nor writes to the home directory."""
    require_tools()
    config = tmp_path / "asyncapi-analytics.json"
    config.write_text(json.dumps({"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "tests"}))
    env = {**os.environ, "CI": "true", "ASYNCAPI_METRICS_CONFIG_PATH": str(config), "NO_COLOR": "1"}
    return subprocess.run(
        [node(), str(ASYNCAPI_CLI), "validate", str(document), "--fail-severity", "warn",
         "--diagnostics-format", "json"],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT, check=False)


def diagnostics(output: str) -> list[dict[str, Any]]:
    """The JSON array of diagnostics the CLI prints after its one-line verdict ([] when none)."""
    start = output.find("[")
    return json.loads(output[start:output.rindex("]") + 1]) if start >= 0 else []


def ajv_compile(schemas: Sequence[Path]) -> list[dict[str, Any]]:
    """Each schema compiled by Ajv2020 in strict mode: [{"schema", "ok", "error"}]."""
    require_tools()
    done = subprocess.run([node(), str(AJV_CHECK), "compile", *map(str, schemas)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.stdout.strip(), f"ajv-check printed nothing: {done.stderr}"
    assert not done.stderr.strip(), f"ajv-check complained: {done.stderr}"  # strict warnings included
    return json.loads(done.stdout)


def ajv_validate(schema: Path, messages: Sequence[Any]) -> dict[str, Any]:
    """Every message validated against `schema` (strict Ajv2020) in one node process:
    {"schema", "count", "invalid": [{"index", "errors"}]}."""
    require_tools()
    done = subprocess.run([node(), str(AJV_CHECK), "validate", str(schema)], input=json.dumps(list(messages)),
                          capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode in (0, 1) and done.stdout.strip(), f"ajv-check failed: {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    assert (done.returncode == 0) == (not result["invalid"])
    return result
