"""What the fuzz tests share (this module holds no tests): how many cases each runs, and the
figures they record.

- FUZZ_EXAMPLES (environment): cases per fuzz test; 150 by default, so that the suite fits in
  `make test`; `make fuzz` runs many more (its FUZZ_EXAMPLES).
- FUZZ_REPORT (environment): a JSON file the figures are added to (`make fuzz` sets it); the
  figures are printed in any case, and docs/reliability.md "Fuzzing the edges" records a run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))

# No example database (nothing written to the work tree), no deadline (each case is an HTTP
# request to a real server), and the fixtures are the servers: not reset per example on purpose.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])


class Tally:
    """Figures of one fuzz test: cases tried, answers by status, 5xx, crashes (a request that
    got no answer), and whatever else the test counts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    def answered(self, status: int) -> None:
        self.counts["cases"] += 1
        self.statuses[status] += 1
        if status >= 500:
            self.counts["5xx"] += 1

    def crashed(self) -> None:
        self.counts["cases"] += 1
        self.counts["crashes"] += 1

    def figures(self) -> dict[str, object]:
        return {"cases": self.counts["cases"], "5xx": self.counts["5xx"], "crashes": self.counts["crashes"],
                **{k: v for k, v in self.counts.items() if k not in ("cases", "5xx", "crashes")},
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}

    def record(self) -> dict[str, object]:
        """Print the figures, and add them to FUZZ_REPORT if it is set."""
        figures = self.figures()
        print(f"\nfuzz figures {self.name}: {json.dumps(figures)}")
        target = os.environ.get("FUZZ_REPORT")
        if target:
            path = Path(target)
            report = json.loads(path.read_text()) if path.exists() else {}
            report[self.name] = figures
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
        return figures


def summary(report: dict[str, dict[str, object]]) -> str:
    """The figures of a fuzz run, one line per test and a total: what `make fuzz` prints."""
    lines, totals = [], Counter()
    for name, figures in report.items():
        for key in ("cases", "5xx", "crashes", "published invalid facts", "published for an invalid delivery",
                    "stored for a refused delivery"):
            totals[key] += int(figures.get(key, 0))  # type: ignore[call-overload]
        lines.append(f"{name}: {figures['cases']} cases, {figures['5xx']} 5xx, {figures['crashes']} crashes, "
                     f"statuses {figures['statuses']}")
    lines.append(f"total: {totals['cases']} cases, {totals['5xx']} 5xx, {totals['crashes']} crashes, "
                 f"{totals['published invalid facts']} published invalid facts, "
                 f"{totals['published for an invalid delivery']} published for an invalid delivery, "
                 f"{totals['stored for a refused delivery']} stored for a refused delivery")
    return "\n".join(lines)


if __name__ == "__main__":  # `make fuzz`: python -m tests.fuzzing <FUZZ_REPORT>
    import sys

    source = Path(sys.argv[1])
    if not source.exists():
        sys.exit(f"no fuzz figures in {source}: the fuzz tests did not get to record them")
    print("\nfuzz figures\n" + summary(json.loads(source.read_text())))
