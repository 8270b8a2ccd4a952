"""`python -m bench [--quick] [--tiny] [--only a,b]`: run, print a table, write latest.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import cpu_clock, machine, steal_pct
from bench.stack import Bench

RESULTS = Path(__file__).resolve().parent / "results"


def registry() -> dict[str, Callable[..., dict]]:
    from bench import api, engine, jobs

    return {
        "api_create": api.api_create,
        "e2e_throughput": jobs.e2e_throughput,
        "dispatch_latency": jobs.dispatch_latency,
        "concurrency_efficiency": engine.concurrency_efficiency,
        "client_overhead": engine.client_overhead,
        "ratelimit_goodput": engine.ratelimit_goodput,
        "memory": jobs.memory,
    }


def fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def table(results: dict[str, dict]) -> Table:
    out = Table(title="modelcert benchmarks (ours vs bare baseline, same run)")
    for col in ("benchmark", "ours", "baseline", "ratio", "units", "target", "notes"):
        out.add_column(col, overflow="fold")
    for name, r in results.items():
        if name == "machine":
            continue
        if "skipped" in r or "error" in r:
            out.add_row(name, "—", "—", "—", "", "", r.get("skipped") or r.get("error", ""))
            continue
        notes = "\n".join(
            f"{k}={fmt(v)}"
            for k, v in [*(r.get("extra") or {}).items(), ("steal_pct", r.get("steal_pct"))]
        )
        out.add_row(
            name,
            fmt(r["ours"]),
            fmt(r["baseline"]),
            fmt(r["ratio"]),
            r["units"],
            r.get("target", ""),
            notes,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 3 minutes)")
    parser.add_argument("--tiny", action="store_true", help="plumbing only (the smoke test)")
    parser.add_argument("--only", default="", help="comma-separated benchmark ids")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    benchmarks = registry()
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(benchmarks)
    unknown = [b for b in chosen if b not in benchmarks]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks)}",
            file=sys.stderr,
        )
        return 2
    console = Console(width=max(Console().width, 150))
    results: dict[str, dict] = {}
    description = machine()
    bench = Bench()
    console.print(f"[dim]bench workdir {bench.workdir}; database and processes are private[/]")
    try:
        for name in chosen:
            started, since = time.monotonic(), cpu_clock()
            console.print(f"[bold]{name}[/] …")
            try:
                result = benchmarks[name](bench, quick=args.quick or args.tiny, tiny=args.tiny)
            except Exception as exc:  # noqa: BLE001 - one broken benchmark does not lose the rest
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            result.setdefault("parameters", {})
            for key in ("ours", "baseline", "ratio", "units"):
                result.setdefault(key, None)
            result["machine"] = description
            result["seconds"] = round(time.monotonic() - started, 1)
            # The share of the CPU the host gave other guests meanwhile: a figure measured
            # while it took a tenth of our cores is not this code's (bench/README).
            result["steal_pct"] = steal_pct(since)
            results[name] = result
            stolen = result["steal_pct"]
            console.print(
                f"  done in {result['seconds']} s; the host took "
                f"{'—' if stolen is None else stolen} % of the CPU (steal)"
            )
    finally:
        bench.close(keep_logs=args.keep_logs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(table(results))
    console.print(f"written {args.out}")
    broken = [n for n, r in results.items() if "error" in r]
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
