"""Retrieval metrics with trec_eval semantics (through pytrec_eval) and rank-biased overlap.

Runs are ``{qid: {docid: score}}`` and qrels ``{qid: {docid: relevance}}``, as in ir_measures and
pytrec_eval. Metric names are the ones papers use::

    nDCG@10  nDCG     ndcg_cut_10 / ndcg     (graded gains, as trec_eval)
    R@100    Recall@100                        recall_100
    P@5      Precision@5                       P_5
    MAP      AP         MAP@100                map / map_cut_100
    RR       MRR        RR@10 / MRR@10         recip_rank (the cut is applied to the run, see below)
    Success@10                                 success_10
    R-Prec   Bpref                             Rprec / bpref

Raw trec_eval names (``ndcg_cut_10``, ``ndcg_cut.10``, ``P_5``, ``gm_map``, ``iprec_at_recall_0.10``, ...) are
accepted too, and aggregate as trec_eval does (``num_*`` summed, ``gm_*`` geometric mean, others arithmetic).

**Ordering (trec_eval's):** documents are sorted by score, highest first, with scores compared as 32-bit
floats (pytrec_eval keeps them as C ``float``), and ties broken by docid in *descending* string order. The
rank column of a run file is ignored. :func:`trec_order` gives that order.

**Averaging:** ``average="both"`` (trec_eval's default, and what the official ReasonRank evaluation
reports) averages over queries present in both the run and the qrels; ``average="qrels"`` (``trec_eval -c``)
averages over every query of the qrels, a query missing from the run counting as an empty ranking (0 for
every rank metric). Queries of the run without judgments are never evaluated; a warning says how many.

Examples:
    >>> run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 1.0}}
    >>> qrels = {"q1": {"d2": 1}, "q2": {"d3": 2}, "q3": {"d9": 1}}
    >>> evaluate(run, qrels, ["RR@1", "nDCG@10"])
    {'RR@1': 0.5, 'nDCG@10': 0.8154648767857288}
    >>> evaluate(run, qrels, "RR@1", average="qrels")
    {'RR@1': 0.3333333333333333}
    >>> percent(0.8154648767857288)
    '81.55'
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import struct
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from ._errors import InvalidInputError, MissingDependencyError, UnknownNameError

__all__ = [
    "DEFAULT_METRICS",
    "RELEVANCE_RANGE",
    "Qrels",
    "Run",
    "check_metrics",
    "evaluate",
    "percent",
    "rbo",
    "trec_order",
]

logger = logging.getLogger(__name__)

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]
Average = Literal["both", "qrels"]

#: what ``reasonrank eval`` reports unless told otherwise (the official runs report NDCG@1/5/10)
DEFAULT_METRICS: tuple[str, ...] = ("nDCG@10", "nDCG@5", "nDCG@1", "R@10", "R@100", "MAP", "RR@10")

# friendly name (lower case) -> (trec_eval measure without cutoff, trec_eval measure with cutoff)
_FRIENDLY: dict[str, tuple[str | None, str | None]] = {
    "ndcg": ("ndcg", "ndcg_cut"),
    "r": (None, "recall"),
    "recall": (None, "recall"),
    "p": (None, "P"),
    "precision": (None, "P"),
    "map": ("map", "map_cut"),
    "ap": ("map", "map_cut"),
    "rr": ("recip_rank", "recip_rank"),
    "mrr": ("recip_rank", "recip_rank"),
    "success": (None, "success"),
    "r-prec": ("Rprec", None),
    "rprec": ("Rprec", None),
    "bpref": ("bpref", None),
}
# trec_eval measures that take a cutoff list; asking for one without a cutoff is ambiguous
_CUTOFF_MEASURES = frozenset(
    {"P", "recall", "ndcg_cut", "map_cut", "success", "relative_P", "iprec_at_recall", "Rprec_mult"}
)
_NON_NUMERIC = frozenset({"runid", "relstring"})
_FRIENDLY_FORMS = "nDCG@k, nDCG, R@k, P@k, MAP, MAP@k, RR, RR@k (MRR@k), Success@k, R-Prec, Bpref"
_RAW = re.compile(r"(?P<base>[A-Za-z0-9_]+?)(?:[._](?P<param>[0-9]+(?:\.[0-9]+)?))?")
#: the largest cutoff a metric takes (trec_eval keeps cutoffs as C ints; no ranking is longer than this)
_MAX_CUTOFF = 10**9

#: the relevance grades qrels may hold, inclusive (real collections use 0..4, some -2..-1 for spam). trec_eval's
#: time and memory grow with the largest grade (32767 costs 0.6 s per query, 2**31 - 1 takes 17 GB) and grades
#: beyond a C int wrap around, so grades outside this range are refused.
RELEVANCE_RANGE: tuple[int, int] = (-1000, 1000)


@dataclass(frozen=True)
class _Measure:
    """One requested metric: the pytrec_eval measure to ask for, the result key, and a run cutoff for RR@k."""

    name: str  # as the caller wrote it: the key of the result
    base: str  # pytrec_eval measure family, e.g. "ndcg_cut"
    param: str | None  # cutoff or level, e.g. "10"
    truncate: int | None = None  # evaluate on the run cut to its top-k (RR@k)

    @property
    def result_key(self) -> str:
        return self.base if self.param is None else f"{self.base}_{self.param}"


def _import_pytrec_eval() -> Any:
    """pytrec_eval (with numpy and scipy) is the ``eval`` extra, kept out of the light base install."""
    try:
        import pytrec_eval
    except ImportError:
        raise MissingDependencyError("pytrec-eval-terrier", "eval", "Computing retrieval metrics") from None
    return pytrec_eval


def _supported() -> frozenset[str]:
    pytrec_eval = _import_pytrec_eval()
    return frozenset(pytrec_eval.supported_measures) - _NON_NUMERIC


def _parse_metric(name: Any) -> _Measure:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"a metric name must be a non-empty string, got {name!r}")
    text = name.strip()
    if "@" in text:
        family, _, cutoff = text.partition("@")
        key = family.strip().lower()
        if key not in _FRIENDLY or not _is_cutoff(cutoff.strip()):
            raise UnknownNameError(
                "metric", name, _FRIENDLY_FORMS.split(", "), hint=f"k is an integer from 1 to {_MAX_CUTOFF}"
            )
        with_cut = _FRIENDLY[key][1]
        if with_cut is None:
            raise UnknownNameError("metric", name, _FRIENDLY_FORMS.split(", "), hint=f"{family} takes no cutoff")
        k = int(cutoff.strip())
        if with_cut == "recip_rank":  # pytrec_eval has no cut for RR: evaluate on the run cut to its top k
            return _Measure(name, "recip_rank", None, truncate=k)
        return _Measure(name, with_cut, str(k))
    key = text.lower()
    if key in _FRIENDLY:
        without_cut = _FRIENDLY[key][0]
        if without_cut is None:  # e.g. "P" or "R"
            raise InvalidInputError(f"metric {name!r} needs a cutoff, e.g. {text}@10")
        return _Measure(name, without_cut, None)
    match = _RAW.fullmatch(text)
    supported = _supported()
    if match and match["base"] in supported:
        base, param = match["base"], match["param"]
        if param is None and base in _CUTOFF_MEASURES:
            raise InvalidInputError(f"metric {name!r} needs a cutoff, e.g. {base}_10 (or {_FRIENDLY_FORMS})")
        if param is not None and base not in _CUTOFF_MEASURES:
            raise InvalidInputError(f"metric {name!r}: trec_eval's {base} takes no cutoff")
        return _Measure(name, base, None if param is None else _canonical_param(name, base, param))
    raise UnknownNameError(
        "metric",
        name,
        _FRIENDLY_FORMS.split(", "),
        hint=f"trec_eval names work too: {', '.join(sorted(supported))}",
    )


_LEVEL_MEASURES = frozenset({"iprec_at_recall", "Rprec_mult"})  # parameters with 2 decimals, e.g. _0.20


def _canonical_param(name: str, base: str, param: str) -> str:
    """The parameter as pytrec_eval names its result (``P_05`` -> ``5``, ``iprec_at_recall_0.1`` -> ``0.10``)."""
    if base in _LEVEL_MEASURES:
        text = f"{float(param):.2f}"
        if float(text) != float(param) or float(param) > _MAX_CUTOFF:
            raise InvalidInputError(f"metric {name!r}: trec_eval's {base} takes at most 2 decimals, e.g. {base}_0.20")
        return text
    if not _is_cutoff(param):
        raise InvalidInputError(f"metric {name!r}: the cutoff must be an integer from 1 to {_MAX_CUTOFF}")
    return str(int(param))


def _is_cutoff(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= _MAX_CUTOFF


def check_metrics(metrics: str | Iterable[str]) -> list[str]:
    """Validate metric names without evaluating anything; returns them as a list.

    Examples:
        >>> check_metrics("nDCG@10")
        ['nDCG@10']
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InvalidInputError(f"no metrics given; e.g. metrics=['nDCG@10', 'R@100'] ({_FRIENDLY_FORMS})")
    for name in names:
        _parse_metric(name)
    return names


def _float32(x: float) -> float:
    try:
        return float(struct.unpack("f", struct.pack("f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def trec_order(scores: Mapping[str, float]) -> list[str]:
    """Docids in the order trec_eval (and pytrec_eval) evaluates them.

    Highest score first, scores compared as 32-bit floats; ties broken by docid in descending string order.

    Examples:
        >>> trec_order({"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.0000000001})
        ['c', 'd', 'b', 'a']
    """
    return [docid for docid, _ in sorted(scores.items(), key=lambda kv: (_float32(kv[1]), kv[0]), reverse=True)]


def _as_key(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInputError(f"{what} must be a str (or int), got {type(value).__name__} {value!r:.40}")


def _check_run(run: Any) -> dict[str, dict[str, float]]:
    if not isinstance(run, Mapping):
        raise InvalidInputError(f"run must be a mapping {{qid: {{docid: score}}}}, got {type(run).__name__}")
    out: dict[str, dict[str, float]] = {}
    for qid, docs in run.items():
        q = _as_key(qid, "a run qid")
        if not isinstance(docs, Mapping):
            raise InvalidInputError(f"run[{qid!r}] must be a mapping {{docid: score}}, got {type(docs).__name__}")
        scores: dict[str, float] = {}
        for docid, score in docs.items():
            if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
                raise InvalidInputError(f"run[{qid!r}][{docid!r}] must be a finite number, got {score!r}")
            _add(scores, _as_key(docid, f"a docid of run query {qid!r}"), float(score), f"run query {qid!r}")
        _add(out, q, scores, "the run")
    return out


def _add(mapping: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Store ``value`` unless ``key`` is taken already (an int id and its string, e.g. 1 and "1", collide)."""
    if key in mapping:
        raise InvalidInputError(f"{where} has the id {key!r} twice (as an int and a str?); ids must be unique")
    mapping[key] = value


def _relevance_problem(rel: int) -> str | None:
    low, high = RELEVANCE_RANGE
    if low <= rel <= high:
        return None
    return (
        f"relevance {rel} is outside the supported range {low}..{high} (trec_eval's time and memory grow with the "
        "largest grade); use small integer grades such as 0 (not relevant) to 3 (highly relevant)"
    )


def _check_qrels(qrels: Any) -> dict[str, dict[str, int]]:
    if not isinstance(qrels, Mapping):
        raise InvalidInputError(f"qrels must be a mapping {{qid: {{docid: relevance}}}}, got {type(qrels).__name__}")
    out: dict[str, dict[str, int]] = {}
    for qid, docs in qrels.items():
        q = _as_key(qid, "a qrels qid")
        if not isinstance(docs, Mapping):
            raise InvalidInputError(f"qrels[{qid!r}] must be a mapping {{docid: relevance}}, got {type(docs).__name__}")
        rels: dict[str, int] = {}
        for docid, rel in docs.items():
            if isinstance(rel, float) and rel.is_integer():
                rel = int(rel)
            if isinstance(rel, bool) or not isinstance(rel, numbers.Integral):
                raise InvalidInputError(f"qrels[{qid!r}][{docid!r}] must be an integer relevance, got {rel!r}")
            problem = _relevance_problem(int(rel))
            if problem:
                raise InvalidInputError(f"qrels[{qid!r}][{docid!r}]: {problem}")
            _add(rels, _as_key(docid, f"a docid of qrels query {qid!r}"), int(rel), f"qrels query {qid!r}")
        _add(out, q, rels, "the qrels")
    return out


def _truncate(run: dict[str, dict[str, float]], k: int) -> dict[str, dict[str, float]]:
    return {qid: {d: docs[d] for d in trec_order(docs)[:k]} for qid, docs in run.items()}


def _aggregate(base: str, values: Sequence[float]) -> float:
    if base.startswith("num_"):
        return math.fsum(values)
    if base.startswith("gm_"):  # per-query values are logs (trec_eval's geometric mean)
        return math.exp(math.fsum(values) / len(values))
    return math.fsum(values) / len(values)


@overload
def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: str | Iterable[str] = ...,
    *,
    per_query: Literal[False] = ...,
    average: Average = ...,
    relevance_level: int = ...,
) -> dict[str, float]: ...
@overload
def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: str | Iterable[str] = ...,
    *,
    per_query: Literal[True],
    average: Average = ...,
    relevance_level: int = ...,
) -> dict[str, dict[str, float]]: ...
def evaluate(
    run: Run,
    qrels: Qrels,
    metrics: str | Iterable[str] = DEFAULT_METRICS,
    *,
    per_query: bool = False,
    average: Average = "both",
    relevance_level: int = 1,
) -> dict[str, float] | dict[str, dict[str, float]]:
    """Evaluate ``run`` against ``qrels``: ``{metric: mean}``, or ``{qid: {metric: value}}`` with ``per_query``.

    Result keys are the metric names as given. ``relevance_level`` is the lowest grade that counts as
    relevant for binary metrics (R, P, MAP, RR); nDCG always uses the graded relevance values as gains.
    Grades must lie in :data:`RELEVANCE_RANGE`; a query whose qrels are empty counts as unjudged.
    ``per_query`` lists the queries the mean is taken over (see the module docstring for ``average``).
    Qids and docids may be str or int (ints become strings).
    """
    names = check_metrics(metrics)
    if average not in ("both", "qrels"):
        raise InvalidInputError(
            f"average must be 'both' (trec_eval's default) or 'qrels' (trec_eval -c), not {average!r}"
        )
    if isinstance(relevance_level, bool) or not isinstance(relevance_level, int) or _relevance_problem(relevance_level):
        low, high = RELEVANCE_RANGE
        raise InvalidInputError(f"relevance_level must be an int from {low} to {high}, got {relevance_level!r}")
    measures = [_parse_metric(n) for n in names]
    checked_run, checked_qrels = _check_run(run), _check_qrels(qrels)
    # A query with no judgments at all (``{"q2": {}}``) is an unjudged query, as in a TREC qrels file.
    checked_qrels = {q: rels for q, rels in checked_qrels.items() if rels}

    unjudged = [q for q in checked_run if q not in checked_qrels]
    if unjudged:
        logger.warning(
            "%d of %d run queries have no judgments in the qrels and are not evaluated (e.g. %s)",
            len(unjudged),
            len(checked_run),
            ", ".join(map(repr, unjudged[:3])),
        )
    if average == "qrels":  # trec_eval -c: a query missing from the run is an empty ranking
        queries = list(checked_qrels)
        checked_run = {q: checked_run.get(q, {}) for q in queries}
    else:
        queries = [q for q in checked_run if q in checked_qrels]
    if not queries:
        raise InvalidInputError(
            "no query is in both the run and the qrels, so nothing can be evaluated "
            f"(run qids e.g. {list(checked_run)[:3]}, qrels qids e.g. {list(checked_qrels)[:3]}); check that "
            "they use the same ids, or pass average='qrels' to score missing queries as 0"
        )
    evaluated_run = {q: checked_run[q] for q in queries}
    per: dict[str, dict[str, float]] = {q: {} for q in queries}
    for truncate in sorted({m.truncate for m in measures}, key=lambda t: (t is not None, t or 0)):
        group = [m for m in measures if m.truncate == truncate]
        group_run = evaluated_run if truncate is None else _truncate(evaluated_run, truncate)
        results = _pytrec_evaluate(group_run, checked_qrels, group, relevance_level)
        for q in queries:
            for m in group:
                per[q][m.name] = float(results[q][m.result_key])
    if per_query:
        return per
    return {m.name: _aggregate(m.base, [per[q][m.name] for q in queries]) for m in measures}


def _pytrec_evaluate(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], measures: list[_Measure], level: int
) -> dict[str, dict[str, float]]:
    pytrec_eval = _import_pytrec_eval()
    params: dict[str, set[str]] = {}
    for m in measures:
        params.setdefault(m.base, set())
        if m.param is not None:
            params[m.base].add(m.param)
    # One request per family with every cutoff ("ndcg_cut.5,10"): separate requests can shadow each other.
    requested = {base if not ps else f"{base}." + ",".join(sorted(ps)) for base, ps in params.items()}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, requested, relevance_level=level)
    results: dict[str, dict[str, float]] = evaluator.evaluate(run)
    return results


def percent(value: float, *, convention: Literal["reasonrank", "beir"] = "reasonrank") -> str:
    """A mean metric as papers print it: ×100 with two decimals.

    ``"reasonrank"`` is the official ReasonRank evaluation (``'{:.2f}'.format(mean * 100)``). ``"beir"``
    first rounds the mean to 5 decimals as BEIR and BRIGHT's evaluation code do; the first-stage rows of the
    ReasonRank paper's BRIGHT table were produced that way (leetcode: 0.3168496 -> 31.68 vs 31.69).

    Examples:
        >>> percent(0.3168496), percent(0.3168496, convention="beir")
        ('31.68', '31.69')
    """
    if convention == "reasonrank":
        return f"{value * 100:.2f}"
    if convention == "beir":
        return f"{round(value, 5) * 100:.2f}"
    raise InvalidInputError(f"convention must be 'reasonrank' or 'beir', got {convention!r}")


def _bound(value: float) -> float:
    # Keep values within [0, 1], leaving values a rounding error above 1 as they are (rbo 0.1.3 does the same).
    if 0 <= value <= 1 or abs(1 - value) <= 1e-8 + 1e-5 * abs(value):
        return value
    return min(1.0, max(0.0, value))


def rbo(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    p: float = 0.9,
    *,
    depth: int | None = None,
    extrapolate: bool = False,
) -> float:
    """Rank-biased overlap of two rankings (Webber et al. 2010), evaluated to depth ``k = min(len(a), len(b), depth)``.

    ``p < 1`` gives the truncated sum ``(1 - p) * sum_{d=1..k} p**(d-1) * A_d`` (``A_d``: overlap of the two
    top-``d`` prefixes divided by ``d``). ``extrapolate=True`` gives the extrapolated RBO instead: for lists
    of equal length (after cutting both to ``depth``) that sum plus ``A_k * p**k`` (Webber et al. eq. 30), for
    lists of unequal length eq. 32, which assumes the shorter list's unseen items agree as its seen ones
    did. ``p = 1`` gives the *average overlap* ``mean(A_1 .. A_k)``: that is
    what the official ReasonRank RL reward computes (``rbo`` package 0.1.3, ``RankingSimilarity(a, b).rbo()``
    with its default ``p=1.0``; model-reference §3.3), reproduced here value for value. Two empty lists give
    1.0, one empty list 0.0. Items must be hashable and unique within each list.

    Examples:
        >>> rbo(list("abcde"), list("bacde"), p=1.0)
        0.8
        >>> round(rbo(list("abcdefg"), list("zcavwxy"), p=0.9), 6)
        0.151561
        >>> round(rbo(list("NHMACFL"), list("CGNA"), p=0.9, extrapolate=True), 6)  # Webber et al. eq. 32
        0.490384
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise InvalidInputError(f"p must be in (0, 1], got {p!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise InvalidInputError(f"depth must be an int >= 1 or None, got {depth!r}")
    for name, items in (("a", a), ("b", b)):
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise InvalidInputError(f"{name} must be a list of items, got {type(items).__name__}")
        try:
            unique = len(set(items)) == len(items)
        except TypeError:
            raise InvalidInputError(f"the items of {name} must be hashable (e.g. docid strings)") from None
        if not unique:
            raise InvalidInputError(f"{name} contains duplicate items; a ranking lists each item once")
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    if extrapolate and p < 1:
        a, b = a[:depth], b[:depth]
        if len(a) != len(b):
            long, short = (a, b) if len(a) > len(b) else (b, a)
            return _bound(_rbo_ext_unequal(long, short, p))
    k = min(len(a), len(b), depth if depth is not None else len(a))
    # The recurrences follow rbo 0.1.3 step by step, so that p = 1 matches the official reward to the last bit.
    seen_a, seen_b = {a[0]}, {b[0]}
    agreement = 1.0 if a[0] == b[0] else 0.0
    weight = (lambda d: 1.0) if p == 1 else (lambda d: 1.0 * (1 - p) * p**d)
    score = weight(0) if a[0] == b[0] else 0.0
    for d in range(1, k):
        gained = (a[d] in seen_b) + (b[d] in seen_a) + (a[d] == b[d])
        agreement = 1.0 * (agreement * d + gained) / (d + 1)
        score = (score * d + agreement) / (d + 1) if p == 1 else score + weight(d) * agreement
        seen_a.add(a[d])
        seen_b.add(b[d])
    if extrapolate and p < 1:
        return _bound(score + agreement * p**k)
    return _bound(score)


def _rbo_ext_unequal(long: Sequence[Hashable], short: Sequence[Hashable], p: float) -> float:
    """Extrapolated RBO of lists of unequal length, Webber et al. (2010) eq. 32.

    ``(1-p)/p * (sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d) + ((X_l - X_s)/l + X_s/s) p^l``
    with ``l``, ``s`` the two lengths and ``X_d`` the overlap of the top ``d`` of the long list with the
    top ``min(d, s)`` of the short one.
    """
    l, s = len(long), len(short)  # noqa: E741 - the paper's names
    short_items = set(short)
    seen_long: set[Hashable] = set()
    seen_short: set[Hashable] = set()
    overlap = overlap_s = 0
    total = 0.0
    for d in range(1, l + 1):
        x = long[d - 1]
        if d <= s:
            y = short[d - 1]
            overlap += (x in seen_short) + (y in seen_long) + (x == y)
            seen_long.add(x)
            seen_short.add(y)
            overlap_s = overlap
            total += overlap / d * p**d
        else:
            overlap += x in short_items
            total += (overlap / d + overlap_s * (d - s) / (s * d)) * p**d
    return (1 - p) / p * total + ((overlap - overlap_s) / l + overlap_s / s) * p**l
