"""The one command: ``python -m bench.run_all`` runs every benchmark below, in order.

To add a benchmark, append its module name to ``BENCHMARKS``; the module exposes
``main() -> None``, prints its table and writes its own section of docs/benchmarks.md.
A missed target is reported by the benchmark itself and is not an error; a benchmark that
crashes is reported here, the others still run, and the command exits non-zero.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

BENCHMARKS: list[str] = [
    "bench.core_overhead",
    "bench.slack_ingress",
    "bench.extraction",
    "bench.retrieval",
    "bench.summarize",
    "bench.peak",
    "bench.cost",
]


def main() -> None:
    crashed: list[str] = []
    for name in BENCHMARKS:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(name).main()
        except Exception:  # noqa: BLE001 - reported with its traceback; the next one still runs
            traceback.print_exc()
            crashed.append(name)
        print(f"== {name}: {time.perf_counter() - started:.1f} s ==\n", flush=True)
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
