"""run_eval / ``reasonrank eval`` on real data with fake models: files, resume after a crash, refusals, CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from reasonrank import InvalidInputError, Reranker, WindowFailedError, window_schedule
from reasonrank.backends import Backend, FakeBackend, Generation, GenerationRequest, answer
from reasonrank.cli import main
from reasonrank.evaluation import EvalData, run_eval
from reasonrank.io import read_run, write_run
from reasonrank.metrics import evaluate, percent


def shuffled(request: GenerationRequest) -> Generation:
    """A deterministic 'model' whose answer depends on the window's passages (so windows depend on each other)."""
    keys = [hashlib.sha256(f"{request.query}|{d}".encode()).hexdigest() for d in request.docids]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return Generation(answer(order, reasoning=f"{len(order)} passages"), output_tokens=len(order) * 2, prompt_tokens=9)


class Flaky(Backend):
    """Answers like `shuffled` for the first `budget` windows, then fails like a crashed server."""

    name = "flaky"

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.requests = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [g for _, g in self.stream(requests)]

    def stream(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Generation]]:
        for i, request in enumerate(requests):
            if self.requests >= self.budget:
                raise ConnectionError("server died")
            self.requests += 1
            yield i, shuffled(request)


@pytest.fixture(scope="module")
def noveleval(shared_data) -> EvalData:
    folder = shared_data / "noveleval"
    return EvalData.from_files(qrels=folder / "qrels.txt", data_json=folder / "data.json")


def _eval(backend: Backend, data: EvalData, out: Path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("model_id", "shuffled")
    kw.setdefault("window", 10)
    kw.setdefault("step", 5)
    kw.setdefault("limit", 6)
    kw.setdefault("query_batch_size", 4)
    return run_eval(Reranker(backend, progress=False), data, out, **kw)


def _without_seconds(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def test_files_agree_with_each_other(noveleval, tmp_path):
    result = _eval(FakeBackend(shuffled), noveleval, tmp_path, scores="positional", metrics=["nDCG@10", "RR@5"])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cache.jsonl", "manifest.json", "metrics.json", "run.trec", "summary.json", "traces.jsonl"]
    written = read_run(tmp_path / "run.trec")
    assert written == result.run and list(written) == [str(q) for q in range(6)]
    # positional: the first-stage score sequence stays with the positions (1, 1/2, 1/3, ... in NovelEval)
    assert list(written["0"].values()) == [round(1 / (i + 1), 6) for i in range(20)]
    assert [line.split()[2] for line in (tmp_path / "run.trec").read_text().splitlines()[:20]] == (
        result.rankings[0].docids
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reranked"] == evaluate(written, noveleval.qrels, ["nDCG@10", "RR@5"]) == result.metrics
    assert metrics["first_stage"] == evaluate(noveleval.first_stage_run([str(q) for q in range(6)]), noveleval.qrels,
                                              ["nDCG@10", "RR@5"])  # fmt: skip
    assert set(metrics["per_query"]["reranked"]) == {str(q) for q in range(6)}
    traces = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 6 * 3  # 20 candidates, window 10, step 5: [10,20) [5,15) [0,10)
    assert [(t["start"], t["end"]) for t in traces[:3]] == [(10, 20), (5, 15), (0, 10)]
    first = traces[0]
    assert first["qid"] == "0" and first["query"] == noveleval.queries["0"]
    assert first["reasoning"] == "10 passages" and first["output_tokens"] == 20 and first["prompt_tokens"] == 9
    assert first["repairs"] == [] and first["seconds"] >= 0 and "prompt" not in first
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["windows"] == summary["windows_generated"] == 18 and summary["windows_from_cache"] == 0
    assert summary["generated_tokens"] == 18 * 20 and summary["queries"] == 6
    assert summary["generated_tokens_per_second"] > 0 and summary["queries_per_second"] > 0
    table = result.table()
    assert "nDCG@10" in table and percent(result.metrics["nDCG@10"]) in table and "queries/s" in table


def test_crash_and_resume_calls_the_model_only_for_missing_windows(noveleval, tmp_path):
    reference = tmp_path / "reference"
    _eval(FakeBackend(shuffled), noveleval, reference)

    resumed = tmp_path / "resumed"
    with pytest.raises(WindowFailedError, match="server died") as info:
        _eval(Flaky(budget=7), noveleval, resumed)  # dies in window round 1 (4 queries per batch)
    assert info.value.completed == 3
    cached = (resumed / "cache.jsonl").read_text().splitlines()[1:]
    assert len(cached) == 7
    first_seconds = {json.loads(line)["key"]: json.loads(line)["seconds"] for line in cached}

    counting = FakeBackend(shuffled)
    result = _eval(counting, noveleval, resumed)
    assert counting.num_requests == 18 - 7  # no window twice
    assert (result.summary["windows_from_cache"], result.summary["windows_generated"]) == (7, 11)
    for name in ("run.trec", "metrics.json"):
        assert (resumed / name).read_bytes() == (reference / name).read_bytes(), name
    assert _without_seconds(resumed / "traces.jsonl") == _without_seconds(reference / "traces.jsonl")
    # replayed windows report the model time measured when they were generated
    seconds = [json.loads(line)["seconds"] for line in (resumed / "traces.jsonl").read_text().splitlines()]
    assert set(first_seconds.values()) <= set(seconds)

    before = (resumed / "traces.jsonl").read_bytes()
    again = FakeBackend(shuffled)
    _eval(again, noveleval, resumed)  # a finished run replays from the cache alone, byte for byte
    assert again.num_requests == 0
    assert (resumed / "traces.jsonl").read_bytes() == before


def test_changed_settings_are_refused_and_harmless_ones_allowed(noveleval, tmp_path):
    _eval(FakeBackend(shuffled), noveleval, tmp_path, limit=2)
    with pytest.raises(InvalidInputError, match=r"other settings \(step: 5 -> 4\)"):
        _eval(FakeBackend(shuffled), noveleval, tmp_path, limit=2, step=4)
    with pytest.raises(InvalidInputError, match="model_id"):
        _eval(FakeBackend(shuffled), noveleval, tmp_path, limit=2, model_id="another-model")
    with pytest.raises(InvalidInputError, match="max_tokens"):
        run_eval(
            Reranker(FakeBackend(shuffled), progress=False, sampling=shuffled_sampling()),
            noveleval, tmp_path, window=10, step=5, limit=2, model_id="shuffled", progress=False,
        )  # fmt: skip
    changed_data = EvalData(
        dict(noveleval.queries), {q: c[:19] for q, c in noveleval.candidates.items()}, noveleval.qrels
    )
    with pytest.raises(InvalidInputError, match="data:"):
        _eval(FakeBackend(shuffled), changed_data, tmp_path, limit=2)
    # limit, scores and metrics do not change generations: allowed, and served from the cache
    counting = FakeBackend(shuffled)
    result = _eval(counting, noveleval, tmp_path, limit=3, scores="positional", metrics=["P@5"])
    assert counting.num_requests == 3 and list(result.metrics) == ["P@5"]
    # overwrite discards the old run
    counting = FakeBackend(shuffled)
    _eval(counting, noveleval, tmp_path, limit=2, step=4, overwrite=True)
    assert counting.num_requests == 2 * len(window_schedule(20, 10, 4))


def shuffled_sampling():
    from reasonrank import SamplingParams

    return SamplingParams(max_tokens=99)


def test_bad_inputs_fail_before_any_model_call(noveleval, tmp_path):
    backend = FakeBackend(shuffled)
    with pytest.raises(InvalidInputError, match="unknown metric"):
        _eval(backend, noveleval, tmp_path / "a", metrics=["nDCG@x"])
    unjudged = EvalData(noveleval.queries, noveleval.candidates, {"other": {"d": 1}})
    with pytest.raises(InvalidInputError, match="none of the 6 queries has judgments"):
        _eval(backend, unjudged, tmp_path / "b")
    with pytest.raises(InvalidInputError, match="limit"):
        _eval(backend, noveleval, tmp_path / "c", limit=0)
    assert backend.num_requests == 0


def test_average_over_qrels_counts_unretrieved_queries(noveleval, tmp_path):
    qrels = dict(noveleval.qrels, extra={"x": 1})
    data = EvalData(noveleval.queries, noveleval.candidates, qrels)
    both = _eval(FakeBackend(), data, tmp_path / "both", limit=None, metrics=["nDCG@10"], model_id="keep")
    over = _eval(FakeBackend(), data, tmp_path / "qrels", limit=None, metrics=["nDCG@10"], average="qrels",
                 model_id="keep")  # fmt: skip
    assert over.metrics["nDCG@10"] == pytest.approx(both.metrics["nDCG@10"] * 21 / 22)
    assert over.summary["queries_evaluated"] == 22


def test_run_files_and_data_json_give_the_same_candidates(shared_data, noveleval, tmp_path):
    folder = shared_data / "noveleval"
    run_path = tmp_path / "first_stage.trec.gz"
    write_run(noveleval.first_stage_run(), run_path, sort=False, decimals=None)
    data = EvalData.from_files(
        qrels=folder / "qrels.txt", run=run_path, queries=folder / "queries.tsv", corpus=folder / "corpus.tsv"
    )
    assert data.queries == noveleval.queries
    assert {q: [(p.docid, p.text, p.score) for p in c] for q, c in data.candidates.items()} == {
        q: [(p.docid, p.text, p.score) for p in c] for q, c in noveleval.candidates.items()
    }
    assert data.fingerprint() == noveleval.fingerprint()
    shallow = EvalData.from_files(
        qrels=folder / "qrels.txt", run=run_path, queries=folder / "queries.tsv", corpus=folder / "corpus.tsv",
        depth=5, candidate_order="score",
    )  # fmt: skip
    assert [p.docid for p in shallow.candidates["0"]] == ["0-0", "0-1", "0-2", "0-3", "0-4"]


def test_missing_texts_are_reported(shared_data, tmp_path):
    folder = shared_data / "noveleval"
    run_path = tmp_path / "run.trec"
    run_path.write_text("0 Q0 0-0 1 2.0 t\n0 Q0 nowhere 2 1.0 t\n99 Q0 0-1 1 1.0 t\n")
    with pytest.raises(InvalidInputError, match=r"1 queries of the run are not in .*queries.tsv \(e.g. \['99'\]\)"):
        EvalData.from_files(qrels=folder / "qrels.txt", run=run_path, queries=folder / "queries.tsv",
                            corpus=folder / "corpus.tsv")  # fmt: skip
    run_path.write_text("0 Q0 0-0 1 2.0 t\n0 Q0 nowhere 2 1.0 t\n")
    with pytest.raises(InvalidInputError, match=r"1 docids of the run are not in .*corpus.tsv \(e.g. \['nowhere'\]\)"):
        EvalData.from_files(qrels=folder / "qrels.txt", run=run_path, queries=folder / "queries.tsv",
                            corpus=folder / "corpus.tsv")  # fmt: skip
    with pytest.raises(InvalidInputError, match="either data_json"):
        EvalData.from_files(qrels=folder / "qrels.txt", run=run_path, data_json=folder / "data.json")


# ------------------------------------------------------------------------------------------- CLI


def test_cli_oracle_dry_run_and_refusal(shared_data, tmp_path, capsys):
    folder = shared_data / "noveleval"
    argv = [
        "eval",
        "--data-json",
        str(folder / "data.json"),
        "--qrels",
        str(folder / "qrels.txt"),
        "--backend",
        "oracle",
        "--output-dir",
        str(tmp_path),
        "--no-progress",
        "--metrics",
        "nDCG@10,P@5",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "21 queries (21 evaluated" in out and "21 windows (0 from cache, 21 generated)" in out
    assert "nDCG@10            65.03    100.00   +34.97" in out  # the search-engine order vs a perfect reranker
    assert main(argv) == 0
    assert "(21 from cache, 0 generated)" in capsys.readouterr().out
    assert main([*argv, "--window", "10", "--step", "5"]) == 1
    assert "holds a run with other settings (step: 10 -> 5; window: 20 -> 10)" in capsys.readouterr().err
    assert main([*argv, "--metrics", "nDCG@ten"]) == 1
    assert "unknown metric 'nDCG@ten'" in capsys.readouterr().err


def test_cli_bright_positional_identity_reproduces_the_published_first_stage(shared_data, tmp_path, capsys):
    """Plumbing on real BRIGHT data: a model that keeps every window's order, official positional scores.

    The passages' texts are not in the shared data, so the corpus here holds each docid as its text (the
    fake model does not read them). Reranked and first-stage nDCG@10 both equal the paper's 30.96.
    """
    folder = shared_data / "bright"
    run = read_run(folder / "runs" / "stackoverflow.reasonir_top100.trec", lenient=True)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": d, "contents": d}) + "\n" for d in {d for v in run.values() for d in v})
    )
    out_dir = tmp_path / "out"
    argv = [
        "eval",
        "--run",
        str(folder / "runs" / "stackoverflow.reasonir_top100.trec"),
        "--lenient",
        "--qrels",
        str(folder / "qrels" / "stackoverflow.qrels"),
        "--queries",
        str(folder / "topics" / "stackoverflow.tsv.gz"),
        "--corpus",
        str(corpus),
        "--backend",
        "fake",
        "--scores",
        "positional",
        "--metrics",
        "nDCG@10",
        "--output-dir",
        str(out_dir),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "nDCG@10            30.96     30.96    +0.00" in capsys.readouterr().out
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["skipped_run_lines"] == 12 and summary["queries"] == 117
    assert summary["windows"] == sum(len(window_schedule(len(docs))) for docs in run.values())
    assert main([a for a in argv if a != "--lenient"]) == 1  # strict: the line and the fix are named
    assert "stackoverflow.reasonir_top100.trec:407: a TREC run line has 6 fields" in capsys.readouterr().err


def test_example_script_runs(tmp_path):
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "evaluate_noveleval.py"
    done = subprocess.run(
        [sys.executable, str(example), "--backend", "oracle", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 queries (3 evaluated)" in done.stdout and "nDCG@10            72.41    100.00" in done.stdout
    assert (tmp_path / "run.trec").exists()


def test_strategy_is_part_of_the_settings(noveleval, tmp_path):
    # tdpart on 20 candidates with window 10: a top window, pivot comparisons, a final window -> 3 rounds
    counting = FakeBackend(shuffled)
    result = _eval(counting, noveleval, tmp_path, limit=2, strategy="tdpart")
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["strategy"] == "TDPart(cutoff=None)"
    assert len(counting.calls) <= 3 and result.metrics
    with pytest.raises(InvalidInputError, match=r"strategy: \"TDPart\(cutoff=None\)\" -> \"Sliding\(mode='fixed'\)\""):
        _eval(FakeBackend(shuffled), noveleval, tmp_path, limit=2)
    with pytest.raises(InvalidInputError, match="applies to the sliding strategy only"):
        _eval(FakeBackend(shuffled), noveleval, tmp_path / "x", limit=2, strategy="tdpart", window_mode="faithful")
    faithful = _eval(FakeBackend(shuffled), noveleval, tmp_path / "f", limit=2, window_mode="faithful")
    assert json.loads((tmp_path / "f" / "manifest.json").read_text())["settings"]["strategy"] == (
        "Sliding(mode='faithful')"
    )
    assert faithful.metrics
