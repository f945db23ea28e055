"""NovelEval end to end with the real SmolLM2-135M-Instruct: Python API, and the CLI killed with SIGKILL and resumed.

Kept small for CI on 2 CPU cores: 2 queries x 3 windows of 10 passages (40 tokens each), 16 generated tokens.
Windows run one per generate() call (batch size 1), so a window's output does not depend on which other
windows share its batch, and the resumed run must reproduce the uninterrupted one exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrank import Reranker
from reasonrank.evaluation import EvalData, run_eval
from reasonrank.io import read_run
from reasonrank.metrics import evaluate

pytestmark = pytest.mark.slow

SETTINGS = {"window": 10, "step": 5, "limit": 2}
MODEL_OPTIONS = {"template": "reasonrank", "max_tokens": 16, "max_passage_tokens": 40, "batch_size": 1}
WINDOWS = 2 * 3  # 20 candidates, window 10, step 5: [10, 20) [5, 15) [0, 10)


def _gguf_path(smollm2_gguf) -> str:
    return os.path.join(*smollm2_gguf)


@pytest.fixture(scope="module")
def noveleval_data(shared_data) -> EvalData:
    folder = shared_data / "noveleval"
    return EvalData.from_files(qrels=folder / "qrels.txt", data_json=folder / "data.json")


@pytest.fixture(scope="module")
def reference(smollm2_gguf, noveleval_data, tmp_path_factory):
    """An uninterrupted run through the Python API."""
    reranker = Reranker.from_pretrained(_gguf_path(smollm2_gguf), progress=False, **MODEL_OPTIONS)
    out = tmp_path_factory.mktemp("reference")
    result = run_eval(reranker, noveleval_data, out, progress=False, metrics=["nDCG@10", "nDCG@5"], **SETTINGS)
    return out, result


def test_noveleval_with_smollm2_through_the_python_api(reference, noveleval_data):
    out, result = reference
    assert result.summary["windows"] == result.summary["windows_generated"] == WINDOWS
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == WINDOWS
    for trace in traces:  # a real model ran: real token counts, text, timing
        assert trace["prompt_tokens"] > 300 and 0 < trace["output_tokens"] <= 16
        assert trace["output"].strip() and trace["seconds"] > 0
        assert sorted(trace["order"]) == list(range(10)) and trace["qid"] in ("0", "1")
    run = read_run(out / "run.trec")
    assert sorted(run) == ["0", "1"] and all(len(docs) == 20 for docs in run.values())
    assert result.metrics == evaluate(run, noveleval_data.qrels, ["nDCG@10", "nDCG@5"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generated_tokens"] == sum(t["output_tokens"] for t in traces)
    assert summary["generated_tokens_per_second"] > 0 and summary["queries_per_second"] > 0


def _complete_records(cache: Path) -> list[dict]:
    if not cache.exists():
        return []
    data = cache.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines()
    return [json.loads(line) for line in lines[1:]]


def _without_seconds(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def test_cli_killed_with_sigkill_resumes_without_recomputing(reference, smollm2_gguf, shared_data, tmp_path):
    folder = shared_data / "noveleval"
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "reasonrank", "eval",
        "--data-json", str(folder / "data.json"), "--qrels", str(folder / "qrels.txt"),
        "--model", _gguf_path(smollm2_gguf), "--template", "reasonrank",
        "--max-tokens", "16", "--max-passage-tokens", "40", "--batch-size", "1",
        "--window", "10", "--step", "5", "--limit", "2", "--metrics", "nDCG@10,nDCG@5",
        "--output-dir", str(out), "--no-progress",
    ]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    cache = out / "cache.jsonl"
    deadline = time.monotonic() + 600
    while len(_complete_records(cache)) < 2:  # wait for two finished windows, then kill without warning
        assert process.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "no window finished in 10 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done_before = _complete_records(cache)
    assert 2 <= len(done_before) < WINDOWS, "the kill must land mid-run"
    assert not (out / "run.trec").exists()

    resumed = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reasonrank.backends.hf: loading" in resumed.stderr  # windows were missing: the model loaded
    summary = json.loads((out / "summary.json").read_text())
    # the model ran only for the windows that had not finished, and no window was generated twice
    assert summary["windows_from_cache"] == len(done_before)
    assert summary["windows_generated"] == WINDOWS - len(done_before)
    records = _complete_records(cache)
    assert len(records) == WINDOWS and len({r["key"] for r in records}) == WINDOWS
    assert records[: len(done_before)] == done_before
    assert f"{len(done_before)} from cache, {WINDOWS - len(done_before)} generated" in resumed.stdout

    # the same final files as the uninterrupted run (traces up to the measured seconds)
    reference_dir, _ = reference
    for name in ("run.trec", "metrics.json"):
        assert (out / name).read_bytes() == (reference_dir / name).read_bytes(), name
    assert _without_seconds(out / "traces.jsonl") == _without_seconds(reference_dir / "traces.jsonl")
    seconds = [json.loads(line)["seconds"] for line in (out / "traces.jsonl").read_text().splitlines()]
    assert {r["seconds"] for r in done_before} <= set(seconds)  # replayed windows keep their measured time

    # A rerun over the complete cache prints the same table without loading the model (only its tokenizer).
    again = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{WINDOWS} from cache, 0 generated" in again.stdout
    assert "reasonrank.backends.hf: loading" not in again.stderr, again.stderr[-2000:]
    assert (out / "run.trec").read_bytes() == (reference_dir / "run.trec").read_bytes()
