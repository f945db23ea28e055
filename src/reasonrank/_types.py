"""Plain data types shared by every layer: passages, rankings, window traces, sampling settings."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ._errors import InvalidInputError, PassageTypeError
from .scores import relevance_score

__all__ = [
    "TEXT_KEYS",
    "Passage",
    "PassageLike",
    "RankedPassage",
    "Ranking",
    "Repair",
    "SamplingParams",
    "WindowTrace",
    "as_passage",
    "as_passages",
]

# The official loader (utils.convert_doc_to_prompt_content) takes the first of these keys that is present.
# "content" is our addition, tried last, so that RankGPT-style hits ({"content": ...}) work too; it cannot
# change the text chosen for any mapping the official code accepts.
TEXT_KEYS: tuple[str, ...] = ("text", "segment", "contents", "body", "passage", "content")
DOCID_KEYS: tuple[str, ...] = ("docid", "doc_id", "id", "_id")


def check_trec_field(value: Any, what: str) -> str:
    """A qid, docid or tag as a TREC line can hold it, so that readers read back what was written.

    Non-empty, no whitespace (it would split the line), valid Unicode (no lone surrogate); a qid must not
    start with ``#`` (readers take such a line for a comment and drop it).
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"a TREC {what} must be a str, got {type(value).__name__} {value!r:.40}")
    if not value or any(c.isspace() for c in value):
        raise InvalidInputError(f"{what} {value!r} is empty or contains whitespace and cannot be written as TREC")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise InvalidInputError(f"{what} {value!r} holds a lone surrogate (not valid Unicode) and cannot be written")
    if what == "qid" and value.startswith("#"):
        raise InvalidInputError(
            f"qid {value!r} starts with '#': TREC readers (trec_eval, read_run, read_qrels) take such a line for "
            "a comment and drop it; rename the query"
        )
    return value


@dataclass(frozen=True)
class Passage:
    """One candidate passage.

    ``metadata`` keeps every key of a mapping that was not used as text, title, docid or score, so nothing
    a caller passed in is lost on the way to the :class:`Ranking`.

    Examples:
        >>> Passage("Paris is the capital of France.", docid="d1", score=12.5).docid
        'd1'
    """

    text: str
    docid: str | None = None
    title: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        # Checked here so that a Passage built by hand fails at once, not when a run is written. An int docid
        # is turned into its str, as for mappings (``{"id": 7}`` -> ``"7"``).
        _check_str(self.text, "text", None)
        if self.title is not None:
            _check_str(self.title, "title", None)
        if self.docid is not None and not isinstance(self.docid, str):
            object.__setattr__(self, "docid", _docid(self.docid, None))
        _score(self.score, None)
        if not isinstance(self.metadata, Mapping):
            raise PassageTypeError(f"passage metadata must be a mapping, got {type(self.metadata).__name__}")


PassageLike = str | Mapping[str, Any] | Passage


def _where(index: int | None) -> str:
    return "passage" if index is None else f"passage {index}"


def _check_str(value: Any, what: str, index: int | None) -> str:
    if not isinstance(value, str):
        raise PassageTypeError(f"{_where(index)}: {what} must be a str, got {type(value).__name__} ({value!r:.60})")
    return value


def _docid(value: Any, index: int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PassageTypeError(f"{_where(index)}: docid must be a str or int, got {type(value).__name__}")
    return str(value)


def _score(value: Any, index: int | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PassageTypeError(f"{_where(index)}: score must be a number, got {type(value).__name__}")
    return float(value)


def as_passage(obj: PassageLike, index: int = 0) -> Passage:
    """Turn a string, mapping or :class:`Passage` into a :class:`Passage`, checking types.

    Mappings use the official keys: the text is the first present of ``text``, ``segment``, ``contents``,
    ``body``, ``passage`` (then ``content``); ``title`` is optional; the docid is ``docid``/``doc_id``/``id``/``_id``.

    Examples:
        >>> as_passage({"contents": "Some text", "title": "T", "id": 7, "lang": "en"})
        Passage(text='Some text', docid='7', title='T', score=None, metadata={'lang': 'en'})
    """
    if isinstance(obj, Passage):
        _check_str(obj.text, "text", index)
        if obj.title is not None:
            _check_str(obj.title, "title", index)
        return obj
    if isinstance(obj, str):
        return Passage(text=obj)
    if isinstance(obj, Mapping):
        text_key = next((k for k in TEXT_KEYS if k in obj), None)
        if text_key is None:
            raise InvalidInputError(
                f"passage {index} has no text: give one of the keys {', '.join(TEXT_KEYS)} "
                f"(it has {', '.join(map(str, obj)) or 'no keys'})"
            )
        text = _check_str(obj[text_key], f"'{text_key}'", index)
        title = obj.get("title")
        if title is not None:
            _check_str(title, "'title'", index)
        docid_key = next((k for k in DOCID_KEYS if k in obj), None)
        docid = _docid(obj[docid_key], index) if docid_key else None
        score = _score(obj.get("score"), index)
        used = {text_key, "title", "score", docid_key}
        metadata = {k: v for k, v in obj.items() if k not in used}
        return Passage(text=text, docid=docid, title=title, score=score, metadata=metadata)
    raise PassageTypeError(
        f"passage {index} is a {type(obj).__name__}; pass a str, a mapping with a text key, or a Passage"
    )


def as_passages(passages: Sequence[PassageLike] | Any) -> list[Passage]:
    """Validate and convert a sequence of passages (see :func:`as_passage`)."""
    if isinstance(passages, (str, bytes, Mapping)) or not isinstance(passages, Sequence):
        raise PassageTypeError(
            f"passages must be a list of passages, got {type(passages).__name__}; wrap a single passage in a list"
        )
    return [as_passage(p, i) for i, p in enumerate(passages)]


def _check_int_field(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an int, got {type(value).__name__} {value!r:.60}")


def _check_number_field(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {type(value).__name__} {value!r:.60}")


def _stop_strings(stop: Any) -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings: a bare string is one stop string (not its characters)."""
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, Sequence) or isinstance(stop, (bytes, bytearray)):
        raise InvalidInputError(f"stop must be a string or a sequence of strings, got {type(stop).__name__}")
    for item in stop:
        if not isinstance(item, str) or not item:
            raise InvalidInputError(f"every stop string must be a non-empty str, got {item!r:.60}")
    return tuple(stop)


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings, spelled as vLLM spells them. ``temperature == 0`` means greedy decoding.

    Every field is sent explicitly to the backend, so a checkpoint's own ``generation_config.json``
    (Qwen2.5 ships T=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05) never changes decoding silently.
    Values are checked here: counts (``max_tokens``, ``min_tokens``, ``top_k``, ``seed``) must be ints,
    the others finite numbers, or :class:`~reasonrank.InvalidInputError` names the field. ``stop`` takes one
    string or a sequence of strings and is kept as a tuple (a bare string is one stop string, never its
    characters).

    Examples:
        >>> SamplingParams(stop="</answer>").stop
        ('</answer>',)
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 (or -1) turns top-k off
    min_p: float = 0.0
    max_tokens: int = 3172
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_tokens", "min_tokens", "top_k"):
            _check_int_field(name, getattr(self, name))
        if self.seed is not None:
            _check_int_field("seed", self.seed)
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            _check_number_field(name, getattr(self, name))
        if self.temperature < 0:
            raise InvalidInputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidInputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise InvalidInputError(f"top_k must be >= 1, or 0 or -1 to turn top-k off, got {self.top_k}")
        if not 0 <= self.min_p <= 1:
            raise InvalidInputError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise InvalidInputError(f"repetition_penalty must be > 0 (1.0 turns it off), got {self.repetition_penalty}")
        if self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise InvalidInputError(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        object.__setattr__(self, "stop", _stop_strings(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Repair:
    """One thing the parser had to fix in a model's answer.

    ``kind`` is one of ``no_answer`` (no answer block: digits read from the whole text), ``answer_fallback``
    (no complete think/answer pair: read after the last ``<answer>``), ``invalid_number``
    (a digit that ``int()`` rejects; the window keeps its order, or with the ``rearank`` parser style only that
    number is skipped), ``duplicate``, ``out_of_range``,
    ``missing`` (appended in original order). ``ids`` are the 1-based identifiers concerned.
    """

    kind: Literal["no_answer", "answer_fallback", "invalid_number", "duplicate", "out_of_range", "missing"]
    ids: tuple[int, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class WindowTrace:
    """What happened in one window: its bounds, the model's raw output and how it was read.

    ``start``/``end`` are 0-based positions ``[start, end)`` in the ranking as it was when the window ran
    (for strategies whose windows are not contiguous, such as ``"tdpart"``, the span they drew from);
    ``order`` is the parsed permutation over window positions (0-based); ``docids`` lists the window's
    passages before the permutation. ``reasoning`` is the thinking part of ``output`` and ``answer`` its answer
    part (``None`` when it has none, e.g. reasoning cut off at ``max_tokens``: the official parsers then read the
    identifiers from the whole output, and ``repairs`` says so).
    """

    round: int
    start: int
    end: int
    docids: tuple[str, ...]
    output: str
    order: tuple[int, ...]
    reasoning: str | None = None
    answer: str | None = None
    repairs: tuple[Repair, ...] = ()
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    seconds: float | None = None
    prompt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowTrace:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["docids"] = tuple(kwargs.get("docids", ()))
        kwargs["order"] = tuple(kwargs.get("order", ()))
        kwargs["repairs"] = tuple(
            Repair(kind=r["kind"], ids=tuple(r.get("ids", ())), detail=r.get("detail", ""))
            for r in kwargs.get("repairs", ())
        )
        return cls(**kwargs)


@dataclass(frozen=True)
class RankedPassage:
    """A passage in its new place: ``index`` is its position in the input, ``score`` its input score."""

    docid: str
    text: str
    index: int
    score: float | None = None
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_passage(cls, passage: Passage, index: int) -> RankedPassage:
        docid = passage.docid if passage.docid is not None else str(index)
        return cls(docid, passage.text, index, passage.score, passage.title, dict(passage.metadata))


ScoreConvention = Literal["rank", "positional"]


@dataclass
class Ranking:
    """The reranked list for one query: every input passage exactly once, best first, plus window traces.

    Examples:
        >>> r = Ranking("q", [RankedPassage("b", "B", 1, 9.0), RankedPassage("a", "A", 0, 10.0)])
        >>> r.docids, r.order
        (['b', 'a'], [1, 0])
        >>> r.to_trec("q1", scores="positional")[0]
        'q1 Q0 b 1 10.000000 reasonrank'
    """

    query: str
    passages: list[RankedPassage]
    windows: list[WindowTrace] = field(default_factory=list)
    qid: str | None = None

    def __len__(self) -> int:
        return len(self.passages)

    def __iter__(self) -> Iterator[RankedPassage]:
        return iter(self.passages)

    def __getitem__(self, i: int) -> RankedPassage:
        return self.passages[i]

    @property
    def docids(self) -> list[str]:
        return [p.docid for p in self.passages]

    @property
    def order(self) -> list[int]:
        """Input positions in the new order: ``passages_in[order[0]]`` is now first."""
        return [p.index for p in self.passages]

    @property
    def num_repaired_windows(self) -> int:
        return sum(1 for w in self.windows if w.repairs)

    def scores(self, convention: ScoreConvention = "rank") -> list[float]:
        """Scores for the new order, strictly decreasing for ``"rank"`` (``n, n-1, ..., 1``).

        ``"positional"`` is the official convention (model-reference §1.8 step 5): the input score
        sequence stays with the positions while the documents move, so position ``i`` gets the input score of
        input position ``i``. Evaluated by trec_eval this reproduces the official numbers, ties included.
        """
        n = len(self.passages)
        if convention == "rank":
            return [float(n - i) for i in range(n)]
        if convention == "positional":
            by_index = sorted(self.passages, key=lambda p: p.index)
            if any(p.score is None for p in by_index):
                raise InvalidInputError(
                    "positional scores need a score on every input passage; use scores='rank' instead"
                )
            return [float(p.score) for p in by_index]  # type: ignore[arg-type]
        raise InvalidInputError(f"unknown score convention {convention!r}; use 'rank' or 'positional'")

    def relevance_scores(self) -> list[float]:
        """``relevance_score`` for the new order, best first: ``1 / rank`` (see :mod:`reasonrank.scores`).

        Examples:
            >>> Ranking("q", [RankedPassage(d, d, i) for i, d in enumerate("abc")]).relevance_scores()
            [1.0, 0.5, 0.3333333333333333]
        """
        return [relevance_score(rank) for rank in range(1, len(self.passages) + 1)]

    def to_run(self, convention: ScoreConvention = "rank") -> dict[str, float]:
        """``{docid: score}`` for this query, as metrics and run writers take it."""
        run: dict[str, float] = {}
        for p, s in zip(self.passages, self.scores(convention)):
            if p.docid in run:
                raise InvalidInputError(f"docid {p.docid!r} appears twice; a run needs unique docids per query")
            run[p.docid] = s
        return run

    def to_trec(
        self, qid: str | None = None, *, tag: str = "reasonrank", scores: ScoreConvention = "rank"
    ) -> list[str]:
        """TREC run lines ``qid Q0 docid rank score tag`` (scores with 6 decimals, as the official writer)."""
        qid = qid if qid is not None else self.qid
        if qid is None:
            raise InvalidInputError("this ranking has no qid; pass one: ranking.to_trec('q1')")
        check_trec_field(qid, "qid")
        check_trec_field(tag, "tag")
        lines = []
        seen: set[str] = set()
        for rank, (p, s) in enumerate(zip(self.passages, self.scores(scores)), start=1):
            check_trec_field(p.docid, "docid")
            if p.docid in seen:
                raise InvalidInputError(f"docid {p.docid!r} appears twice; a run needs unique docids per query")
            seen.add(p.docid)
            lines.append(f"{qid} Q0 {p.docid} {rank} {s:.6f} {tag}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "qid": self.qid,
            "query": self.query,
            "passages": [asdict(p) for p in self.passages],
            "windows": [w.to_dict() for w in self.windows],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ranking:
        return cls(
            query=data["query"],
            passages=[RankedPassage(**p) for p in data["passages"]],
            windows=[WindowTrace.from_dict(w) for w in data.get("windows", ())],
            qid=data.get("qid"),
        )

    @classmethod
    def from_json(cls, text: str) -> Ranking:
        return cls.from_dict(json.loads(text))
