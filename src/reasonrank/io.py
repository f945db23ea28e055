"""Read and write TREC runs and qrels, queries, corpora and RankGPT-style ``data.json`` files.

Every reader accepts plain or gzipped files (detected by content, so a ``.gz`` suffix is optional) and
raises :class:`FileFormatError` naming the file and line of the first malformed line. Nothing is skipped
silently: the ``lenient`` run reader skips exactly what the official ReasonRank loader skips (lines without
exactly 6 whitespace-separated fields, e.g. BRIGHT stackoverflow docids containing spaces) and logs a warning
listing them. Writers create parent directories, gzip when the name ends in ``.gz``, and replace the target
atomically (a crash never leaves a half-written file).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "run.trec.gz")
>>> write_run({"q1": {"d1": 1.5, "d2": 2.0}}, path, tag="bm25")
>>> read_run(path)
{'q1': {'d2': 2.0, 'd1': 1.5}}
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from ._errors import InvalidInputError, PassageTypeError
from ._types import Passage, Ranking, ScoreConvention, as_passage
from .metrics import trec_order

__all__ = [
    "FileFormatError",
    "atomic_writer",
    "open_text",
    "rankings_to_run",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_rankgpt_json",
    "read_run",
    "write_qrels",
    "write_run",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
_QUERY_ID_KEYS = ("_id", "id", "qid", "query_id")
_QUERY_TEXT_KEYS = ("text", "contents", "query")


class FileFormatError(InvalidInputError):
    """A line of an input file is malformed; ``path`` and ``line`` (1-based, 0 for the whole file) say where."""

    def __init__(self, path: PathLike, line: int, problem: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")


def open_text(path: PathLike) -> IO[str]:
    """Open a UTF-8 text file for reading, gunzipping it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line without its newline)``; undecodable bytes become a FileFormatError."""
    number = 0
    try:
        with open_text(path) as f:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise FileFormatError(path, number + 1, f"not valid UTF-8 ({e.reason})") from None
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise FileFormatError(path, number + 1, f"cannot be read: {e}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[str]]:
    """Write a text file (gzipped if the name ends in ``.gz``) via a temporary file and an atomic rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual permissions
        with os.fdopen(fd, "wb") as raw:
            gzipped = target.name.endswith(".gz")
            binary: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if gzipped else raw
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
            yield text
            text.detach()  # flushes into `binary` without closing it
            if gzipped:
                binary.close()  # writes the gzip trailer; `raw` stays open
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------------- runs


def _read_run(path: PathLike, lenient: bool) -> tuple[dict[str, dict[str, float]], list[tuple[int, str]]]:
    run: dict[str, dict[str, float]] = {}
    seen: dict[tuple[str, str], int] = {}
    skipped: list[tuple[int, str]] = []
    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue  # blank and comment lines carry no data (trec_eval 10 allows '#' comments)
        if len(fields) != 6:
            if lenient:  # the official loader: `if len(line.strip().split()) != 6: continue`
                skipped.append((number, line))
                continue
            raise FileFormatError(
                path,
                number,
                f"a TREC run line has 6 fields 'qid Q0 docid rank score tag', this one has {len(fields)}: "
                f"{line[:120]!r}. A docid with spaces cannot be written in TREC format; lenient=True (--lenient) "
                "skips such lines as the official ReasonRank loader does",
            )
        qid, _, docid, rank, score_text, _ = fields
        try:
            score = float(score_text)
        except ValueError:
            raise FileFormatError(path, number, f"score {score_text!r} is not a number") from None
        if not math.isfinite(score):
            raise FileFormatError(path, number, f"score {score_text!r} is not finite")
        if not lenient:
            try:
                int(rank)
            except ValueError:
                raise FileFormatError(path, number, f"rank {rank!r} is not an integer") from None
        if (qid, docid) in seen:
            raise FileFormatError(
                path,
                number,
                f"docid {docid!r} appears twice for query {qid!r} (first on line {seen[qid, docid]}); "
                "trec_eval rejects duplicate documents, remove one of the lines",
            )
        seen[qid, docid] = number
        run.setdefault(qid, {})[docid] = score
    if skipped:
        shown = "; ".join(f"line {n}: {text[:100]!r}" for n, text in skipped[:5])
        logger.warning(
            "%s: skipped %d line(s) without exactly 6 fields (lenient mode): %s%s",
            os.fspath(path),
            len(skipped),
            shown,
            " ..." if len(skipped) > 5 else "",
        )
    return run, skipped


def read_run(path: PathLike, *, lenient: bool = False) -> dict[str, dict[str, float]]:
    """Read a TREC run file ``qid Q0 docid rank score tag`` into ``{qid: {docid: score}}``.

    Queries and documents keep the file's order (the first-stage order the official pipeline reranks).
    Strict by default: every non-blank line must have 6 fields, a numeric score and an integer rank.
    ``lenient=True`` reproduces the official ReasonRank loader instead: lines without exactly 6 fields are
    skipped (with a logged warning that lists them) and the rank column is not checked. Duplicate
    ``(qid, docid)`` pairs are an error in both modes, as in trec_eval.
    """
    return _read_run(path, lenient)[0]


def _format_score(score: float, decimals: int | None) -> str:
    return repr(float(score)) if decimals is None else f"{score:.{decimals}f}"


def _check_trec_token(value: str, what: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise InvalidInputError(f"{what} {value!r} is empty or contains whitespace and cannot be written as TREC")
    return value


def write_run(
    run: Mapping[str, Mapping[str, float]],
    path: PathLike,
    *,
    tag: str = "reasonrank",
    sort: bool = True,
    decimals: int | None = 6,
) -> None:
    """Write ``{qid: {docid: score}}`` as a TREC run (``qid Q0 docid rank score tag``).

    ``sort=True`` writes each query's documents in trec_eval's order (so the rank column agrees with what
    trec_eval evaluates); ``sort=False`` keeps the mapping's order (e.g. a reranked order with positional
    scores, as the official writer does). Scores get ``decimals`` decimals (6, as pyserini's writer), or
    full precision with ``None``.
    """
    _check_trec_token(tag, "tag")
    with atomic_writer(path) as f:
        for qid, docs in run.items():
            _check_trec_token(str(qid), "qid")
            order = trec_order(docs) if sort else list(docs)
            for rank, docid in enumerate(order, start=1):
                _check_trec_token(str(docid), "docid")
                f.write(f"{qid} Q0 {docid} {rank} {_format_score(docs[docid], decimals)} {tag}\n")


def rankings_to_run(
    rankings: Iterable[Ranking], *, scores: ScoreConvention = "rank", decimals: int | None = None
) -> dict[str, dict[str, float]]:
    """``{qid: {docid: score}}`` of reranked lists, in reranked order.

    ``scores="positional"`` is the official convention (first-stage scores stay with positions; ties
    included). ``decimals=6`` rounds scores as a written-and-reread official run file has them, which is what
    the official numbers were computed from.
    """
    run: dict[str, dict[str, float]] = {}
    for ranking in rankings:
        if ranking.qid is None:
            raise InvalidInputError("a ranking has no qid; rerank with qid=... (or qids=[...]) to build a run")
        if ranking.qid in run:
            raise InvalidInputError(f"two rankings have qid {ranking.qid!r}")
        docs = ranking.to_run(scores)
        run[ranking.qid] = docs if decimals is None else {d: float(f"{s:.{decimals}f}") for d, s in docs.items()}
    return run


# --------------------------------------------------------------------------------------------------- qrels


def read_qrels(path: PathLike, *, lenient: bool = False) -> dict[str, dict[str, int]]:
    """Read TREC qrels ``qid iteration docid relevance`` (or a JSON ``{qid: {docid: relevance}}`` file).

    Strict by default: 4 fields per line, integer relevance, no duplicate ``(qid, docid)``. ``lenient=True``
    follows the official loader: 3-field lines ``qid docid relevance`` are accepted and a repeated pair keeps
    its last value (logged).
    """
    if _looks_like_json(path):
        return _read_json_qrels(path)
    qrels: dict[str, dict[str, int]] = {}
    seen: dict[tuple[str, str], int] = {}
    repeated = 0
    for number, line in _lines(path):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 4:
            qid, _, docid, rel_text = fields
        elif len(fields) == 3 and lenient:
            qid, docid, rel_text = fields
        else:
            raise FileFormatError(
                path,
                number,
                f"a qrels line has 4 fields 'qid iteration docid relevance', this one has {len(fields)}: "
                f"{line[:120]!r}",
            )
        try:
            rel = int(rel_text)
        except ValueError:
            raise FileFormatError(path, number, f"relevance {rel_text!r} is not an integer") from None
        if (qid, docid) in seen:
            if not lenient:
                raise FileFormatError(
                    path,
                    number,
                    f"docid {docid!r} is judged twice for query {qid!r} (first on line {seen[qid, docid]}); "
                    "keep one judgment (lenient=True keeps the last, as the official loader)",
                )
            repeated += 1
        seen[qid, docid] = number
        qrels.setdefault(qid, {})[docid] = rel
    if repeated:
        logger.warning("%s: %d repeated judgment(s); the last value of each was kept", os.fspath(path), repeated)
    return qrels


def _looks_like_json(path: PathLike) -> bool:
    name = os.fspath(path).lower().removesuffix(".gz")
    return name.endswith(".json")


def _read_json_qrels(path: PathLike) -> dict[str, dict[str, int]]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise FileFormatError(path, 0, "JSON qrels must be an object {qid: {docid: relevance}}")
    qrels: dict[str, dict[str, int]] = {}
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise FileFormatError(path, 0, f"qrels for query {qid!r} must be an object {{docid: relevance}}")
        for docid, rel in docs.items():
            if isinstance(rel, bool) or not isinstance(rel, (int, str)):
                raise FileFormatError(path, 0, f"relevance of {qid!r}/{docid!r} must be an integer, got {rel!r}")
            try:
                qrels.setdefault(str(qid), {})[str(docid)] = int(rel)
            except ValueError:
                raise FileFormatError(path, 0, f"relevance of {qid!r}/{docid!r} is not an integer: {rel!r}") from None
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write ``{qid: {docid: relevance}}`` as TREC qrels (``qid 0 docid relevance``)."""
    with atomic_writer(path) as f:
        for qid, docs in qrels.items():
            _check_trec_token(str(qid), "qid")
            for docid, rel in docs.items():
                _check_trec_token(str(docid), "docid")
                f.write(f"{qid} 0 {docid} {int(rel)}\n")


# ------------------------------------------------------------------------------------ queries and corpora


def _load_json(path: PathLike) -> Any:
    try:
        with open_text(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FileFormatError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None


def _is_jsonl(path: PathLike) -> bool:
    name = os.fspath(path).lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return True
    if name.endswith((".tsv", ".txt")):
        return False
    for _, line in _lines(path):
        if line.strip():
            return line.lstrip().startswith("{")
    return False


def _jsonl_records(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise FileFormatError(path, number, f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(record, dict):
            raise FileFormatError(path, number, f"each JSONL line must be an object, got {type(record).__name__}")
        yield number, record


TsvQuoting = Literal["auto", "csv", "none"]


def _resolve_quoting(path: PathLike, quoting: str) -> str:
    if quoting not in ("auto", "csv", "none"):
        raise InvalidInputError(f"quoting must be 'auto', 'csv' or 'none', got {quoting!r}")
    if quoting != "auto":
        return quoting
    # CSV writers (pandas, csv.writer) quote a field holding a tab, quote or newline: "say ""hi"" now".
    # Read a file as CSV only if some field starts with a quote and the whole file parses as strict CSV
    # with an id and a text on every row; otherwise take every line verbatim.
    if not any(line.split("\t", 1)[-1].startswith('"') for _, line in _lines(path) if "\t" in line):
        return "none"
    try:
        if all(len(fields) >= 2 for _, fields in _csv_rows(path)):
            logger.info("%s: reading as CSV-quoted TSV", os.fspath(path))
            return "csv"
    except FileFormatError:
        pass
    return "none"


def _tsv_rows(path: PathLike, kind: str, quoting: str) -> Iterator[tuple[int, str, str]]:
    """``(line, id, text)``: the id is the first field, the text the rest (tabs inside it are kept)."""
    mode = _resolve_quoting(path, quoting)
    rows: Iterable[tuple[int, list[str]]]
    if mode == "csv":
        rows = _csv_rows(path)
    else:
        rows = ((n, line.split("\t", 1)) for n, line in _lines(path) if line.strip())
    for number, fields in rows:
        if len(fields) < 2:
            problem = f"a {kind} TSV line is 'id<TAB>text'; this one has no tab: {fields[0][:80] if fields else ''!r}"
            raise FileFormatError(path, number, problem)
        if not fields[0].strip():
            raise FileFormatError(path, number, f"empty {kind} id")
        yield number, fields[0].strip(), "\t".join(fields[1:])


def _csv_rows(path: PathLike) -> Iterator[tuple[int, list[str]]]:
    try:
        with open_text(path) as f:
            reader = csv.reader(f, delimiter="\t", quotechar='"', strict=True)
            start = 1
            for fields in reader:
                if any(field.strip() for field in fields):
                    yield start, fields
                start = reader.line_num + 1
    except csv.Error as e:
        raise FileFormatError(path, start, f"malformed CSV-quoted TSV: {e}") from None


def read_queries(path: PathLike, *, quoting: TsvQuoting = "auto") -> dict[str, str]:
    """Read queries as ``{qid: text}`` from TSV (``qid<TAB>text``) or JSONL (``_id``/``id``/``qid`` and
    ``text``/``contents``/``query``), plain or gzipped. Other JSONL keys (e.g. BEIR's ``metadata``) are ignored.
    ``quoting`` is as for :func:`read_corpus`."""
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    rows: Iterable[tuple[int, str, str]]
    if _is_jsonl(path):
        rows = (_query_from_record(path, n, r) for n, r in _jsonl_records(path))
    else:
        rows = _tsv_rows(path, "query", quoting)
    for number, qid, text in rows:
        if qid in first_line:
            raise FileFormatError(path, number, f"query id {qid!r} appears twice (first on line {first_line[qid]})")
        first_line[qid] = number
        queries[qid] = text
    return queries


def _query_from_record(path: PathLike, number: int, record: Mapping[str, Any]) -> tuple[int, str, str]:
    id_key = next((k for k in _QUERY_ID_KEYS if k in record), None)
    text_key = next((k for k in _QUERY_TEXT_KEYS if k in record), None)
    if id_key is None or text_key is None:
        raise FileFormatError(
            path,
            number,
            f"a query record needs an id ({'/'.join(_QUERY_ID_KEYS)}) and a text ({'/'.join(_QUERY_TEXT_KEYS)}); "
            f"it has {', '.join(record) or 'no keys'}",
        )
    qid, text = record[id_key], record[text_key]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not isinstance(text, str):
        raise FileFormatError(path, number, f"query id must be a str or int and text a str, got {qid!r}, {text!r:.40}")
    return number, str(qid), text


def read_corpus(
    path: PathLike, *, ids: Collection[str] | None = None, quoting: TsvQuoting = "auto"
) -> dict[str, Passage]:
    """Read passages as ``{docid: Passage}`` from TSV (``docid<TAB>text``) or JSONL.

    JSONL records take their id from ``docid``/``doc_id``/``id``/``_id``, their text from the first of
    ``text``, ``segment``, ``contents``, ``body``, ``passage`` (the official keys), and an optional ``title``;
    other keys are kept in ``Passage.metadata``. In TSV the text is everything after the first tab (tabs
    inside it are kept). TSV files written by CSV tools quote fields holding tabs or quotes (``"say ""hi"" now"``);
    ``quoting="auto"`` reads a file that way when every field starting with a quote is such a quoted field
    (NovelEval's corpus.tsv is), ``"csv"`` always, ``"none"`` never (MS MARCO style: text taken verbatim).
    ``ids`` keeps only those documents (reading a large corpus for one run).
    """
    wanted = None if ids is None else set(ids)
    corpus: dict[str, Passage] = {}
    first_line: dict[str, int] = {}
    jsonl = _is_jsonl(path)
    rows: Iterable[tuple[int, Passage]]
    if jsonl:
        rows = ((n, _passage_from_record(path, n, r)) for n, r in _jsonl_records(path))
    else:
        rows = ((n, Passage(text=t, docid=i)) for n, i, t in _tsv_rows(path, "corpus", quoting))
    for number, passage in rows:
        docid = passage.docid or ""
        if docid in first_line:
            raise FileFormatError(path, number, f"docid {docid!r} appears twice (first on line {first_line[docid]})")
        first_line[docid] = number
        if wanted is None or docid in wanted:
            corpus[docid] = passage
    return corpus


def _passage_from_record(path: PathLike, number: int, record: Mapping[str, Any]) -> Passage:
    try:
        passage = as_passage(record)
    except (InvalidInputError, PassageTypeError) as e:
        raise FileFormatError(path, number, str(e).replace("passage 0", "record")) from None
    if passage.docid is None:
        raise FileFormatError(path, number, "a corpus record needs an id (docid, doc_id, id or _id)")
    return passage


def read_rankgpt_json(path: PathLike) -> list[tuple[str, str, list[Passage]]]:
    """Read a RankGPT-style ``data.json``: ``[{"query": ..., "hits": [{"content", "qid", "docid", "score"}]}]``.

    Returns ``[(qid, query, passages)]`` with the hits in file order (the first-stage order) and their
    scores; the qid is the hits' ``qid`` (the item's position when the hits carry none).
    """
    data = _load_json(path)
    if not isinstance(data, list):
        raise FileFormatError(path, 0, "a RankGPT data.json holds a list of {query, hits} objects")
    items: list[tuple[str, str, list[Passage]]] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        where = f"item {i}"
        if not (isinstance(item, dict) and isinstance(item.get("query"), str) and isinstance(item.get("hits"), list)):
            raise FileFormatError(path, 0, f"{where} must be an object with a 'query' string and a 'hits' list")
        qids = {str(h.get("qid")) for h in item["hits"] if isinstance(h, dict) and h.get("qid") is not None}
        if len(qids) > 1:
            raise FileFormatError(path, 0, f"{where}: its hits carry different qids {sorted(qids)}")
        qid = qids.pop() if qids else str(i)
        if qid in seen:
            raise FileFormatError(path, 0, f"{where}: qid {qid!r} appears twice")
        seen.add(qid)
        passages = []
        for j, hit in enumerate(item["hits"]):
            if not isinstance(hit, dict):
                raise FileFormatError(path, 0, f"{where}, hit {j} must be an object")
            fields = {k: v for k, v in hit.items() if k not in ("qid", "rank")}
            try:
                passages.append(as_passage(fields, j))
            except (InvalidInputError, PassageTypeError) as e:
                raise FileFormatError(path, 0, f"{where}: {e}") from None
            if passages[-1].docid is None:
                raise FileFormatError(path, 0, f"{where}, hit {j} has no docid")
        items.append((qid, item["query"], passages))
    return items
