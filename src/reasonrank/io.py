"""Read and write TREC runs and qrels, queries, corpora and RankGPT-style ``data.json`` files.

Every reader accepts plain or gzipped files (detected by content, so a ``.gz`` suffix is optional) and
raises :class:`FileFormatError` naming the file and line of the first malformed line. Nothing is skipped
silently: the ``lenient`` run reader skips exactly what the official ReasonRank loader skips (lines without
exactly 6 whitespace-separated fields, e.g. BRIGHT stackoverflow docids containing spaces) and logs a warning
listing them. Writers create parent directories, gzip when the name ends in ``.gz``, and replace the target
atomically (a crash never leaves a half-written file).

Examples:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.trec.gz")
    >>> write_run({"q1": {"d1": 1.5, "d2": 2.0}}, path, tag="bm25")
    >>> read_run(path)
    {'q1': {'d2': 2.0, 'd1': 1.5}}

Readers skip a UTF-8 byte order mark (as Windows editors and Excel write), and JSON readers reject strings
holding a lone surrogate (an escape like ``"\\ud800"`` that is not valid Unicode) with the file and line.
Writers refuse what the readers would reject or drop (non-finite scores, ``#``-prefixed qids, empty or
whitespace-holding ids and tags), so every file they write reads back as the data it was written from.
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
import re
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from ._errors import InvalidInputError, PassageTypeError
from ._types import Passage, Ranking, ScoreConvention, as_passage, check_trec_field
from .metrics import _check_qrels, _check_run, _relevance_problem, trec_order

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
    """Open a UTF-8 text file for reading, gunzipping it when it starts with the gzip magic bytes.

    A leading byte order mark (``\\ufeff``, as Windows editors and Excel exports write) is skipped.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


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


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_decimals(decimals: int | None) -> None:
    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0):
        raise InvalidInputError(f"decimals must be an int >= 0 or None (full precision), got {decimals!r}")


def _check_rounding(qid: str, docs: Mapping[str, float], decimals: int) -> None:
    """Refuse scores that, rounded to ``decimals``, would make trec_eval rank the query differently."""
    rounded = {d: float(f"{s:.{decimals}f}") for d, s in docs.items()}
    exact, written = trec_order(docs), trec_order(rounded)
    if exact != written:
        i = next(i for i, (a, b) in enumerate(zip(exact, written)) if a != b)
        a, b = exact[i], written[i]
        raise InvalidInputError(
            f"query {qid!r}: with {decimals} decimals the scores of {a!r} ({docs[a]!r} -> {rounded[a]!r}) and "
            f"{b!r} ({docs[b]!r} -> {rounded[b]!r}) would make trec_eval rank {b!r} at {i + 1} instead of {a!r}, "
            "so the file would not evaluate as the run does; use decimals=None (full precision) or more decimals"
        )


def write_run(
    run: Mapping[str, Mapping[str, float]],
    path: PathLike,
    *,
    tag: str = "reasonrank",
    sort: bool = True,
    decimals: int | None = None,
) -> None:
    """Write ``{qid: {docid: score}}`` as a TREC run (``qid Q0 docid rank score tag``).

    ``sort=True`` writes each query's documents in trec_eval's order (so the rank column agrees with what
    trec_eval evaluates); ``sort=False`` keeps the mapping's order (e.g. a reranked order with positional
    scores, as the official writer does). Scores are written at full precision (``repr``), so
    :func:`read_run` gives back exactly ``run``; ``decimals=6`` writes 6 decimals as pyserini's writer does,
    and raises :class:`~reasonrank.InvalidInputError` if the rounding would change the order trec_eval
    evaluates a query in. Qids and docids may be str or int. Raises ``InvalidInputError`` for scores that are
    not finite numbers, empty or whitespace-holding ids and tags, and qids starting with ``#``.
    """
    check_trec_field(tag, "tag")
    _check_decimals(decimals)
    checked = _check_run(run)
    with atomic_writer(path) as f:
        for qid, docs in checked.items():
            check_trec_field(qid, "qid")
            if decimals is not None:
                _check_rounding(qid, docs, decimals)
            order = trec_order(docs) if sort else list(docs)
            for rank, docid in enumerate(order, start=1):
                check_trec_field(docid, "docid")
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
    its last value (logged). Grades outside :data:`reasonrank.metrics.RELEVANCE_RANGE` are an error.
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
        problem = _relevance_problem(rel)
        if problem:
            raise FileFormatError(path, number, problem)
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
                value = int(rel)
            except ValueError:
                raise FileFormatError(path, 0, f"relevance of {qid!r}/{docid!r} is not an integer: {rel!r}") from None
            problem = _relevance_problem(value)
            if problem:
                raise FileFormatError(path, 0, f"query {qid!r}, docid {docid!r}: {problem}")
            qrels.setdefault(str(qid), {})[str(docid)] = value
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> None:
    """Write ``{qid: {docid: relevance}}`` as TREC qrels (``qid 0 docid relevance``).

    Qids and docids may be str or int; a relevance must be an integer (``2.0`` is taken as 2, ``1.7`` is an
    error) within :data:`reasonrank.metrics.RELEVANCE_RANGE`. Raises ``InvalidInputError`` as
    :func:`write_run` does for ids that a reader would reject or drop.
    """
    checked = _check_qrels(qrels)
    with atomic_writer(path) as f:
        for qid, docs in checked.items():
            check_trec_field(qid, "qid")
            for docid, rel in docs.items():
                check_trec_field(docid, "docid")
                f.write(f"{qid} 0 {docid} {rel}\n")


# ------------------------------------------------------------------------------------ queries and corpora


def _load_json(path: PathLike) -> Any:
    try:
        with open_text(path) as f:
            text = f.read()
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise FileFormatError(path, 0, f"not valid UTF-8 ({e.reason})") from None
    except (ValueError, RecursionError) as e:
        raise FileFormatError(path, 0, _unreadable_json(e)) from None
    _check_unicode(path, 0, text, data)
    return data


def _unreadable_json(error: Exception) -> str:
    if isinstance(error, RecursionError):
        return "JSON nested too deeply to read (arrays or objects inside each other about 1000 levels deep)"
    return f"JSON that cannot be read: {error}"  # e.g. an integer with more than 4300 digits


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate_at(value: Any) -> str | None:
    """Where in a decoded JSON value a string holds a lone surrogate (e.g. ``[0]['hits'][3]['content']``)."""
    if isinstance(value, str):
        return "the top level" if _LONE_SURROGATE.search(value) else None
    if not isinstance(value, (dict, list)):
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # iterative: decoded JSON may be nested up to the recursion limit
        where, container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for k, v in items:
            if isinstance(k, str) and _LONE_SURROGATE.search(k):
                return f"{where} (in a key)"
            if isinstance(v, str):
                if _LONE_SURROGATE.search(v):
                    return f"{where}[{k!r}]"
            elif isinstance(v, (dict, list)):
                stack.append((f"{where}[{k!r}]", v))
    return None


def _check_unicode(path: PathLike, line: int, raw: str, value: Any) -> None:
    """JSON's ``\\ud800`` escapes can decode to lone surrogates, which no UTF-8 file, tokenizer or hash can take."""
    if not _SURROGATE_ESCAPE.search(raw):
        return
    where = _lone_surrogate_at(value)
    if where is not None:
        raise FileFormatError(
            path,
            line,
            f"the string at {where} holds a lone surrogate (an unpaired \\ud800-\\udfff escape, not "
            "valid Unicode); fix or remove that escape",
        )


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
        except (ValueError, RecursionError) as e:
            raise FileFormatError(path, number, _unreadable_json(e)) from None
        _check_unicode(path, number, line, record)
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
    scores; the qid is the hits' ``qid`` (the item's position when the hits carry none). A docid listed twice
    in one item's hits and a score that is not a finite number (JSON's ``NaN``) are errors.
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
        passages: list[Passage] = []
        first_hit: dict[str, int] = {}
        for j, hit in enumerate(item["hits"]):
            if not isinstance(hit, dict):
                raise FileFormatError(path, 0, f"{where}, hit {j} must be an object")
            fields = {k: v for k, v in hit.items() if k not in ("qid", "rank")}
            try:
                passages.append(as_passage(fields, j))
            except (InvalidInputError, PassageTypeError) as e:
                raise FileFormatError(path, 0, f"{where}: {e}") from None
            docid, score = passages[-1].docid, passages[-1].score
            if docid is None:
                raise FileFormatError(path, 0, f"{where}, hit {j} has no docid")
            if docid in first_hit:
                raise FileFormatError(
                    path,
                    0,
                    f"{where} (qid {qid!r}): docid {docid!r} is hit {first_hit[docid]} and hit {j}; "
                    "a query lists each document once, remove one of them",
                )
            first_hit[docid] = j
            if score is not None and not math.isfinite(score):
                raise FileFormatError(
                    path, 0, f"{where} (qid {qid!r}), hit {j} (docid {docid!r}): score {score} is not a finite number"
                )
        items.append((qid, item["query"], passages))
    return items
