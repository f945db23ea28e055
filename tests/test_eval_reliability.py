"""run_eval / ``reasonrank eval`` check everything before a model runs or loads, and fail clearly (issue 9)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

import pytest

from reasonrank import InvalidInputError, Passage, ReasonRankError, Reranker
from reasonrank.backends import FakeBackend
from reasonrank.cli import main
from reasonrank.evaluation import EvalData, OutputWriteError, oracle_backend, run_eval
from reasonrank.io import FileFormatError, read_run

DOCS = {"d1": "Berlin is in Germany.", "d2": "Paris is the capital of France.", "d3": "Rome is in Italy."}


def _hits(*rows):
    return [{"qid": "q1", "docid": d, "content": DOCS.get(d, "text"), "score": s} for d, s in rows]


def _data_json(tmp_path: Path, hits: list[dict], query: str = "capital of France") -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"query": query, "hits": hits}]), encoding="utf-8")
    return path


def _files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "qrels.txt").write_text("q1 0 d2 1\nq2 0 d3 1\n")
    (tmp_path / "queries.tsv").write_text("q1\tcapital of France\nq2\tin Italy\n")
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in DOCS.items()))
    (tmp_path / "run.trec").write_text(
        "".join(f"{q} Q0 d{i} {i} {4 - i}.0 bm25\n" for q in ("q1", "q2") for i in (1, 2, 3))
    )
    names = {"qrels": "qrels.txt", "queries": "queries.tsv", "corpus": "corpus.jsonl", "run": "run.trec"}
    return {name: tmp_path / f for name, f in names.items()}


def _argv(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    args = ["eval", "--no-progress", "--output-dir", str(out), "--metrics", "nDCG@10"]
    for name, path in files.items():
        args += [f"--{name.replace('_', '-')}", str(path)]
    if "--backend" not in extra:
        args += ["--backend", "oracle"]
    return [*args, *extra]


def _data(tmp_path: Path) -> EvalData:
    files = _files(tmp_path)
    return EvalData.from_files(**files)  # type: ignore[arg-type]


def _eval(data: EvalData, out: Path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("metrics", ["nDCG@10"])
    return run_eval(Reranker(kw.pop("backend", None) or oracle_backend(data), progress=False), data, out, **kw)


# ------------------------------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("hits", "query", "message"),
    [
        (_hits(("d1", 3.0), ("d2", 2.0), ("d1", 1.0)), "q", r"docid 'd1' is hit 0 and hit 2"),
        (_hits(("d 1", 3.0), ("d2", 2.0)), "q", r"query 'q1', candidate 1 \(docid 'd 1'\): .*whitespace"),
        (_hits(("d1", float("nan")), ("d2", 2.0)), "q", r"hit 0 \(docid 'd1'\): score nan is not a finite number"),
        (_hits(("d1", None), ("d2", 2.0)), "q", r"candidate 1 \(docid 'd1'\) has no first-stage score"),
        (_hits(("d1", 3.0), ("d2", 2.0)), "  ", r"query 'q1' has an empty query text"),
    ],
)
def test_data_json_problems_fail_at_load_naming_the_file_and_query(tmp_path, hits, query, message):
    path = _data_json(tmp_path, hits, query)
    (tmp_path / "qrels.txt").write_text("q1 0 d2 1\n")
    with pytest.raises(FileFormatError, match=rf"data\.json: .*{message}"):
        EvalData.from_files(qrels=tmp_path / "qrels.txt", data_json=path)


def test_cli_reports_bad_data_before_loading_the_model(tmp_path, capsys):
    path = _data_json(tmp_path, _hits(("d1", 3.0), ("d2", 2.0), ("d1", 1.0)))
    (tmp_path / "qrels.txt").write_text("q1 0 d2 1\n")
    files = {"qrels": tmp_path / "qrels.txt", "data_json": path}
    # a model that does not exist: loading it would fail with another message
    assert main(_argv(files, tmp_path / "out", "--backend", "hf", "--model", str(tmp_path / "nope.gguf"))) == 1
    err = capsys.readouterr().err
    assert "docid 'd1' is hit 0 and hit 2" in err and err.count("\n") == 1 and "Traceback" not in err


def test_run_files_problems_name_the_query(tmp_path):
    files = _files(tmp_path)
    files["queries"].write_text("q1\t \nq2\tin Italy\n")
    with pytest.raises(InvalidInputError, match=r"query 'q1' has an empty query text .*queries\.tsv"):
        EvalData.from_files(**files)  # type: ignore[arg-type]
    files["queries"].write_text("q1\tcapital\nq2\tin Italy\n")
    files["corpus"].write_text(
        '{"id": "d1", "text": "a"}\n{"id": "d2", "text": "b \\udc00"}\n{"id": "d3", "text": "c"}\n'
    )
    with pytest.raises(FileFormatError, match=r"corpus\.jsonl:2: the string at \['text'\] holds a lone surrogate"):
        EvalData.from_files(**files)  # type: ignore[arg-type]


def test_eval_data_made_in_python_is_checked_too():
    good = [Passage("a", docid="d1", score=2.0), Passage("b", docid="d2", score=1.0)]
    with pytest.raises(
        InvalidInputError, match=r"query 'q1', candidate 2 \(docid 'd1'\): the docid is also candidate 1"
    ):
        EvalData({"q1": "q"}, {"q1": [good[0], Passage("b", docid="d1", score=1.0)]}, {})
    with pytest.raises(InvalidInputError, match=r"candidate 2 \(docid 'd2'\): its text holds a lone surrogate"):
        EvalData({"q1": "q"}, {"q1": [good[0], Passage("b\ud800", docid="d2", score=1.0)]}, {})
    with pytest.raises(InvalidInputError, match=r"query id '#q' cannot be used"):
        EvalData({"#q": "q"}, {"#q": good}, {})
    with pytest.raises(InvalidInputError, match="outside the supported range"):
        EvalData({"q1": "q"}, {"q1": good}, {"q1": {"d1": 2**31 - 1}})


# ------------------------------------------------------------------------------ arguments and directory


def test_cli_invalid_arguments_write_nothing_and_the_corrected_command_runs(tmp_path, capsys):
    files = _files(tmp_path)
    out = tmp_path / "out"
    for extra, message in (
        (["--window", "1"], "window must be an int >= 2"),
        (["--top-k", "0"], "top_k must be an int >= 1"),
        (["--tag", ""], "tag '' is empty"),
        (["--metrics", "P_99999999999999999999"], "cutoff must be an integer from 1 to"),
    ):
        # --backend hf with a model that does not exist: the arguments fail first, before any load
        argv = _argv(files, out, *extra, "--backend", "hf", "--model", str(tmp_path / "nope.gguf"))
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (out / "manifest.json").exists()
    assert main(_argv(files, out, "--window", "2", "--step", "1")) == 0
    assert "nDCG@10" in capsys.readouterr().out


def test_cli_refuses_changed_settings_before_loading_the_model(tmp_path, capsys):
    files = _files(tmp_path)
    out = tmp_path / "out"
    assert main(_argv(files, out)) == 0
    capsys.readouterr()
    argv = _argv(files, out, "--backend", "hf", "--model", str(tmp_path / "nope.gguf"), "--window", "10", "--step", "5")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and "window: 20 -> 10" in err


def test_output_dir_that_is_a_file_or_holds_a_foreign_manifest(tmp_path, capsys):
    data = _data(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match=r"output_dir .* is a file; give a directory path"):
        _eval(data, tmp_path / "file")
    with pytest.raises(InvalidInputError, match="cannot create the output directory"):
        _eval(data, tmp_path / "file" / "sub")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "manifest.json").write_text("[1]")
    with pytest.raises(InvalidInputError, match="is not a reasonrank manifest"):
        _eval(data, tmp_path / "odd")
    assert main(_argv(_files(tmp_path), tmp_path / "file")) == 1
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


def test_a_run_that_generated_nothing_does_not_block_corrected_settings(tmp_path):
    data = _data(tmp_path)

    def broken(request):
        raise ConnectionError("server down")

    with pytest.raises(ReasonRankError):
        _eval(data, tmp_path / "out", backend=FakeBackend(broken), model_id="m", window=3, step=1)
    assert (tmp_path / "out" / "manifest.json").exists()
    result = _eval(data, tmp_path / "out", backend=oracle_backend(data), model_id="m2", window=2, step=1)
    assert result.metrics["nDCG@10"] == 1.0


def test_overwrite_takes_the_lock_before_deleting_anything(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "out"
    _eval(data, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fd = os.open(out, os.O_RDONLY)  # another run holds the directory
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InvalidInputError, match="is in use by another run"):
            _eval(data, out, overwrite=True)
    finally:
        os.close(fd)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _eval(data, out, overwrite=True).summary["windows_generated"] == 2


def test_temporary_files_left_by_kill_9_are_removed(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for name in (".run.trec.abc123.tmp", ".traces.jsonl.x.tmp", ".manifest.json.y.tmp"):
        (out / name).write_text("half")
    (out / "notes.tmp").write_text("mine")
    _eval(data, out)
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == ["notes.tmp"]


def test_a_full_disk_while_writing_outputs_names_the_file_and_keeps_the_cache(tmp_path, monkeypatch, capsys):
    files = _files(tmp_path)
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("run.trec"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr("reasonrank.io.os.replace", replace)
    with pytest.raises(OutputWriteError, match=r"could not write .*out/run\.trec: No space left on device\. The "
                       r"generation cache .*cache\.jsonl is intact"):  # fmt: skip
        _eval(EvalData.from_files(**files), out, model_id="oracle-backend")  # type: ignore[arg-type]
    assert main(_argv(files, out)) == 1
    err = capsys.readouterr().err
    assert err.startswith("reasonrank eval: error: could not write") and err.count("\n") == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr("reasonrank.io.os.replace", real_replace)
    assert main(_argv(files, out)) == 0
    assert "(2 from cache, 0 generated)" in capsys.readouterr().out
    assert read_run(out / "run.trec")["q1"]["d2"] == 3.0


def test_the_oracle_reads_new_qrels_in_the_same_directory(tmp_path):
    data = _data(tmp_path)
    out = tmp_path / "out"
    assert _eval(data, out).metrics["nDCG@10"] == 1.0
    data.qrels = {"q1": {"d3": 1}, "q2": {"d1": 2}}
    result = _eval(EvalData(data.queries, data.candidates, data.qrels), out)
    assert result.metrics["nDCG@10"] == 1.0
    assert result.summary["windows_generated"] == 2


def test_eval_never_overwrites_files_it_did_not_write(tmp_path, capsys):
    """A directory with a user's run.trec but no manifest of ours is refused; --overwrite is the way to replace it."""
    from reasonrank.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "run.trec").write_text("my precious run\n", encoding="utf-8")
    argv = ["eval", "--dataset", "noveleval", "--backend", "oracle", "--output-dir", str(out), "--no-progress"]
    assert main(argv) == 1
    assert "holds run.trec but no manifest.json" in capsys.readouterr().err
    assert (out / "run.trec").read_text(encoding="utf-8") == "my precious run\n"
    assert main([*argv, "--overwrite"]) == 0
    assert "my precious run" not in (out / "run.trec").read_text(encoding="utf-8")


def test_cli_reports_library_errors_without_a_traceback(capsys):
    from reasonrank.cli import main

    assert main(["demo", "--template", "rank-gpt", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reasonrank demo: error:") and "rankgpt" in err and "Traceback" not in err
