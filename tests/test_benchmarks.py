"""Each benchmark runs from one command: smoke runs in tiny configurations (numbers are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=BENCHMARKS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()  # prints a table
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_cpu_overhead_runs(tmp_path):
    result = run("cpu_overhead.py", "--queries", "1", "--repeats", "1", "--candidates", "30", tmp_path=tmp_path)
    assert "machine" in json.dumps(result)


@pytest.mark.slow
def test_latency_strategies_runs(tmp_path):
    result = run("latency_strategies.py", "--tasks", "pony", "--seeds", "1", "--noise", "0.6:0.2", tmp_path=tmp_path)
    text = json.dumps(result)
    assert "tdpart" in text and "sliding" in text


@pytest.mark.slow
def test_gpu_throughput_script_runs_tiny_on_cpu(tmp_path):
    result = run("gpu_throughput.py", "--tiny", tmp_path=tmp_path)
    assert "machine" in json.dumps(result)


@pytest.mark.slow
def test_serve_load_runs(tmp_path):
    result = run(
        "serve_load.py", "--requests", "8", "--concurrency", "1,4", "--call-seconds", "0", tmp_path=tmp_path
    )  # fmt: skip
    assert [r["concurrency"] for r in result["results"]] == [1, 4]
    assert all(r["codes"] == {"200": 8} for r in result["results"])


@pytest.mark.slow
def test_ray_scaling_runs(tmp_path):
    pytest.importorskip("ray", reason="needs the ray extra")
    args = ("--replicas", "1,2", "--queries", "4", "--latency", "0.001", "--repeats", "1")
    result = run("ray_scaling.py", *args, tmp_path=tmp_path)
    assert [r["replicas"] for r in result["ray"]] == [1, 2] and result["ray_init_seconds"] > 0
