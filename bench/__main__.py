"""Benchmarks: `make bench` (or `python -m bench`). Prints a table and writes bench/results/latest.json.

Every figure runs against the real processes (`journeys serve --no-worker`, `journeys worker`)
over real HTTP, on a fresh SQLite file and — when JOURNEYS_BENCH_POSTGRES_URL points at a
server that answers — on a fresh PostgreSQL database. See bench/README.md for the figures,
their targets and the results.

Environment:
  JOURNEYS_BENCH_POSTGRES_URL  a PostgreSQL server to create scratch databases on (unset: SQLite only)
  JOURNEYS_BENCH_RUNS          runs per figure (default 3; median, min and max are reported)
  JOURNEYS_BENCH_ONLY          "sqlite" or "postgresql" to run one database
  JOURNEYS_BENCH_FIGURES       comma-separated subset of: bulk, engine, search, fresh, feeds (default: all)
  JOURNEYS_BENCH_SEARCH_ROWS   instances stored for search and cancel (default 1,000,000)
  JOURNEYS_BENCH_LAG_RUNS      runs of the 30-second timer-lag figure (default 1)
  JOURNEYS_BENCH_LATENCY_RUNS  runs of the search and cancel figures, 1,000 requests each (default 3)
  JOURNEYS_BENCH_FRESH_ROWS    instances loaded before "search right after a load" (default 100,000)
  JOURNEYS_BENCH_FRESH_QUERIES searches of each kind right after the load (default 200)
  JOURNEYS_BENCH_FRESH_RUNS    runs of that figure, each on a new database (default 1)
  JOURNEYS_BENCH_ENCRYPTED     1: servers and workers run with JOURNEYS_SECRET_KEY (patient data sealed)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import console, feeds, figures
from bench.harness import ROOT, Database, Proc, fresh_database, postgres_reachable


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise SystemExit(f"{name}: must be at least {minimum}")
    return value


RUNS = _int_env("JOURNEYS_BENCH_RUNS", 3, 1)
GROUPS = ("bulk", "engine", "search", "fresh", "feeds")
FIGURES = [
    f.strip() for f in os.environ.get("JOURNEYS_BENCH_FIGURES", ",".join(GROUPS)).split(",") if f.strip()
]
for _name in FIGURES:
    if _name not in GROUPS:
        raise SystemExit(
            f"JOURNEYS_BENCH_FIGURES: unknown figure group {_name!r} (known: {', '.join(GROUPS)})"
        )
SEARCH_ROWS = _int_env("JOURNEYS_BENCH_SEARCH_ROWS", 1_000_000, 10_000)
LAG_RUNS = _int_env("JOURNEYS_BENCH_LAG_RUNS", 1, 0)
# Search and cancel: 1,000 requests per run and figure.
LATENCY_RUNS = _int_env("JOURNEYS_BENCH_LATENCY_RUNS", RUNS, 1)
# Search right after a load: one run by default (each run loads a new database).
FRESH_ROWS = _int_env("JOURNEYS_BENCH_FRESH_ROWS", 100_000, 10_000)
FRESH_QUERIES = _int_env("JOURNEYS_BENCH_FRESH_QUERIES", 200, 10)
FRESH_RUNS = _int_env("JOURNEYS_BENCH_FRESH_RUNS", 1, 1)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def prepare_search(targets: list[tuple[str, str]]) -> dict[str, tuple[Database, figures.SearchData]]:
    """The million instances for the search figures, stored on every database at once (setup:
    SQLite works in this process, PostgreSQL in its server) before anything is measured."""
    if "search" not in FIGURES or not targets:
        return {}
    t0 = time.monotonic()
    dbs: dict[str, Database] = {}
    try:
        for label, base in targets:
            dbs[label] = fresh_database(label, base, "search")
        with ThreadPoolExecutor(len(dbs), thread_name_prefix="bench-setup") as pool:
            futures = {
                label: pool.submit(figures.prepare_search, db, SEARCH_ROWS) for label, db in dbs.items()
            }
            ready = {label: (dbs[label], f.result()) for label, f in futures.items()}
    except BaseException:
        for db in dbs.values():
            db.close()
        raise
    print(
        f"  setup: {SEARCH_ROWS:,} instances stored on {', '.join(dbs)} in {time.monotonic() - t0:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return ready


def _search_and_console(
    db: Database, prepared: figures.SearchData
) -> tuple[list[dict[str, Any]], list[Proc]]:
    """The search group: search and cancel, then the console's journey pages, on its instances."""
    rows, procs = figures.search_and_cancel(db, prepared, LATENCY_RUNS, total=SEARCH_ROWS)
    more, used = console.journey_pages(db, prepared.tenant, SEARCH_ROWS)
    return rows + more, procs + used


def run_database(
    label: str, base: str, search: tuple[Database, figures.SearchData] | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    procs: list[Proc] = []
    groups = {
        "bulk": lambda db: figures.bulk(db, RUNS),
        "engine": lambda db: figures.engine(db, RUNS, lag_runs=LAG_RUNS),
        "search": lambda db: _search_and_console(db, prepared),
        "feeds": lambda db: feeds.hl7(db, RUNS),
        "fresh": lambda db: figures.search_after_load(
            db, FRESH_RUNS, lambda: fresh_database(label, base, "fresh"), FRESH_ROWS, FRESH_QUERIES
        ),
    }
    if "search" in FIGURES:
        assert search is not None, "prepare_search() stores the instances first"
        prepared = search[1]
    for name in FIGURES:
        t0 = time.monotonic()
        db: Database = search[0] if name == "search" and search else fresh_database(label, base, name)
        try:
            got, used = groups[name](db)
        finally:
            db.close()
        rows += got
        procs += used
        print(f"  {label} {name}: done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    servers = [p.peak_rss_mb for p in procs if p.name == "server"]
    workers = [p.peak_rss_mb for p in procs if p.name.startswith("worker")]
    if servers:
        rows.append(figures.result(label, "peak RSS: server process", "MB", servers))
    if workers:
        rows.append(figures.result(label, "peak RSS: worker process", "MB", workers))
    if servers and workers:
        rows.append(
            figures.result(
                label, "peak RSS: server + worker", "MB", [max(servers) + max(workers)], 300, "lower"
            )
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'db':<10} {'figure':<48} {'unit':<12} {'median':>10} {'min':>10} {'max':>10} {'target':>9}  ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        target = "" if r["target"] is None else ("≥" if r["better"] == "higher" else "≤") + f"{r['target']:g}"
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(
            f"{r['db']:<10} {r['figure']:<48} {r['unit']:<12} "
            f"{_fmt(r['median']):>10} {_fmt(r['min']):>10} {_fmt(r['max']):>10} {target:>9}  {ok}"
        )


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"


def main() -> int:
    t0 = time.monotonic()
    targets: list[tuple[str, str]] = []
    only = os.environ.get("JOURNEYS_BENCH_ONLY")
    if only not in (None, "", "sqlite", "postgresql"):
        raise SystemExit(f"JOURNEYS_BENCH_ONLY: {only!r} is neither 'sqlite' nor 'postgresql'")
    notes = []
    with tempfile.TemporaryDirectory(prefix="journeys-bench-") as tmp:
        if only in (None, "", "sqlite"):
            targets.append(("sqlite", tmp))
        pg = os.environ.get("JOURNEYS_BENCH_POSTGRES_URL")
        if only in (None, "", "postgresql"):
            if not pg:
                notes.append("PostgreSQL: skipped (JOURNEYS_BENCH_POSTGRES_URL is not set)")
            elif (why := postgres_reachable(pg)) is not None:
                notes.append(f"PostgreSQL: skipped ({why})")
            else:
                targets.append(("postgresql", pg))
        rows: list[dict[str, Any]] = []
        search = prepare_search(targets)
        try:
            for label, base in targets:
                rows += run_database(label, base, search.pop(label, None))
        finally:
            for db, _ in search.values():
                db.close()
    info = machine()
    elapsed = time.monotonic() - t0
    print(
        f"\njourneys benchmarks — {RUNS} run(s) per figure (median, min, max) — "
        f"{info['cpus']} cores, {info['cpu']}, {info['memory']}, Python {info['python']} — {elapsed:.0f} s\n"
    )
    print_table(rows)
    for note in notes:
        print(note)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(
        json.dumps({"machine": info, "runs": RUNS, "seconds": round(elapsed), "rows": rows}, indent=2) + "\n"
    )
    print(f"\nwritten to {out / 'latest.json'}")
    missed = [r for r in rows if r["ok"] is False]
    return 1 if missed and os.environ.get("JOURNEYS_BENCH_STRICT") else 0


if __name__ == "__main__":
    sys.exit(main())
