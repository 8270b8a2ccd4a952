"""The benchmark harness keeps working: a tiny run writes the JSON every benchmark writes.

Asserts only keys and types, never a speed (benchmarks are measurements, not tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.devtools.harness import inherited_env

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "memory,dispatch_latency",
            "--tiny",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=inherited_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results) == {"memory", "dispatch_latency"}
    memory = results["memory"]
    assert {"ours", "baseline", "ratio", "units", "parameters", "machine"} <= set(memory)
    assert isinstance(memory["ours"], float) and memory["ours"] > 0
    assert isinstance(memory["units"], str)
    assert memory["parameters"]["finished"] == memory["parameters"]["jobs"]
    assert {"platform", "cpus_logical", "memory_gb"} <= set(memory["machine"])
    assert "memory" in proc.stdout  # the table was printed
    # Interleaved rounds of a no-op worker and ours, each with the CPU its host took.
    dispatch = results["dispatch_latency"]
    runs = dispatch["parameters"]["runs"]
    assert len(runs["baseline"]) == len(runs["ours"]) == dispatch["parameters"]["rounds"] == 1
    assert runs["ours"][0]["complete"] and runs["ours"][0]["started"] == 50
    assert dispatch["ours"] == runs["ours"][0]["p99"] and dispatch["ours"] > 0
    assert dispatch["baseline"] == runs["baseline"][0]["p99"] and dispatch["baseline"] > 0
    for side in ("baseline", "ours"):
        assert all(0.0 <= s <= 100.0 for s in runs["steal_pct"][side])
    for result in results.values():
        assert 0.0 <= result["steal_pct"] <= 100.0


def test_profile_e2e_splits_the_cpu_and_draws_the_timeline() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profile_e2e", "20", "--json"],
        cwd=ROOT,
        env=inherited_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["jobs"] >= 20 and result["terminal"] == result["jobs"]
    cpu = result["cpu_ms_per_job"]
    assert {"api.main", "worker.main", "endpoint.main", "machine"} <= set(cpu)
    assert any(name.startswith("worker.child-") for name in cpu)  # the pool processes
    assert sum(created for _, created, _ in result["timeline"]) == result["jobs"]
    assert sum(finished for _, _, finished in result["timeline"]) == result["jobs"]


def test_instruction_count_loops_post_on_both_sides() -> None:
    """The loops `bench.instructions` runs under callgrind (here without it: valgrind makes
    a run take minutes) POST accepted jobs on both sides."""
    for side in ("api", "baseline"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.instructions", "--inner", side, "3"],
            cwd=ROOT,
            env=inherited_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
