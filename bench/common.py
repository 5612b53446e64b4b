"""Helpers shared by the benchmarks: percentiles, machine facts, and the results document.

Every benchmark owns one section of ``docs/benchmarks.md``, fenced by
``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``, and rewrites only that section,
so benchmarks can be run one at a time without erasing each other's figures.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

DOC_HEADER = """\
# Benchmarks

Speed is measured, not asserted. Every benchmark lives in `bench/` and runs with one command:

```
.venv/bin/python -m bench.run_all          # every benchmark, in sequence
.venv/bin/python -m bench.core_overhead    # just one
```

Each benchmark rewrites only its own section below (between its `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->` markers). Every figure is given next to a baseline measured in the same
run on the same machine, so compare ratios rather than absolute times across machines. A missed
target is reported as **MISS**; the benchmarks report, they do not fail the build.
"""


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` for a table cell; a baseline of zero gives ``n/a``."""
    if baseline <= 0:
        return "n/a"
    value /= baseline
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×" if value >= 1 else f"{value:.3f}×"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def machine_info() -> str:
    """One line naming where and when the figures were taken."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{when}; Python {platform.python_version()} ({sys.implementation.name}); "
        f"{os.cpu_count()} CPUs; {platform.platform()}"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, path: Path = DOC_PATH) -> Path:
    """Replace this benchmark's section of ``path`` (or append it), leaving the rest as it was.

    The file is created with a short header on first use, and replaced atomically so an
    interrupted run never leaves half a document behind.
    """
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    section = f"{start}\n{body.strip()}\n{end}"
    current = path.read_text(encoding="utf-8") if path.exists() else DOC_HEADER
    head, found_start, rest = current.partition(start)
    _, found_end, tail = rest.partition(end)
    if found_start and found_end:
        updated = head + section + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(updated)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
