"""``python -m benchmarks.run [--quick] [name ...]``: run the benchmarks, write ``benchmarks/results/<name>.json``
and print each one's ratio against the ceiling measured in the same run, then a summary table.

``make bench`` runs everything (under 10 minutes on two cores), ``make bench-quick`` a reduced size of
each (under 2 minutes). PostgreSQL is used when it answers (``HALLES_BENCH_POSTGRES_URL``, else
``TEST_DATABASE_URL``, else the local default); ``HALLES_BENCH_POSTGRES_URL=off`` skips it."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from benchmarks import common

BENCHMARKS = ("ingest", "listing", "fanout", "convergence")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="name",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a check in under 2 minutes")
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON results")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    machine = common.machine()
    common.say(f"Halles benchmarks on {machine['cpu']} ({machine['cores']} cores), Python {machine['python']}, "
               f"backends: {', '.join(common.available_backends())}{' (quick)' if args.quick else ''}")
    results = {}
    failures = {}
    started = time.perf_counter()
    for name in names:
        common.say(f"\n== {name}")
        module = importlib.import_module(f"benchmarks.{name}")
        timer = common.Timer()
        try:
            results[name] = module.run(quick=args.quick, results_dir=args.results)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            failures[name] = f"{type(exc).__name__}: {exc}"
            common.say(f"{name} FAILED: {failures[name]}")
        common.say(f"({name}: {timer.elapsed:.0f} s)")
    common.say(f"\n{'benchmark':<12} {'value':>12} {'unit':<18} {'ceiling':>12} {'ratio':>7}  target met")
    for name, result in results.items():
        common.say(f"{name:<12} {result['value']:>12.1f} {result['unit']:<18} {result['ceiling']:>12.1f} "
                   f"{result['ratio']:>7.3f}  {'yes' if result['target_met'] else 'no'}")
    for name, failure in failures.items():
        common.say(f"{name:<12} failed: {failure}")
    common.say(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
