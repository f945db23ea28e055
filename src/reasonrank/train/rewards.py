"""RL rewards of ReasonRank (multi-view ranking reward) and REARANK (normalised improvement), in TRL's form.

Importable without torch, transformers or trl. Every ``*_reward`` function has TRL's reward signature
``fn(prompts, completions, **columns) -> list[float]``: ``completions`` are strings (standard datasets) or
chat-message lists (conversational datasets, the last assistant turn is read), and each column arrives as
one value per completion, either as the value itself or as a JSON string (store qrels and lists as JSON
strings: ``datasets`` merges dict keys across rows).

Examples:
    >>> label = "[2] > [1] > [3]"
    >>> multiview_score("<think>...</think> <answer>[2] > [1] > [3]</answer>", label=label,
    ...                 initial_list=["a", "b", "c"], relevant_docids=["b"])
    1.3
    >>> multiview_score("<answer>[2] > [1] > [3]</answer>", label=label, initial_list=["a", "b", "c"],
    ...                 relevant_docids=["b"])
    -1.0
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._errors import InvalidInputError
from ..metrics import evaluate, rbo
from ..parsing import ANSWER_PATTERN, parse_ranking

__all__ = [
    "completion_text",
    "multiview_reward",
    "multiview_score",
    "ndcg_at_10",
    "rearank_reward",
    "rearank_score",
]

Variant = Literal["official", "paper"]

# verl/utils/reward_score/ranking.py: re.search(pattern, predict_str, re.DOTALL) -- no lower-casing in training.
_OFFICIAL_RE = re.compile(ANSWER_PATTERN, re.DOTALL)
# REARANK's answer-format check: "[3] > [1] > [2]" and nothing else inside <answer>.
_BRACKET_LIST = re.compile(r"\s*\[\d+\](?:\s*>\s*\[\d+\])*\s*")
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _digit_tokens(text: str) -> list[str]:
    # Official clean_response: every non-isdigit() character becomes a space.
    return "".join(c if c.isdigit() else " " for c in text).split()


def _metrics(docids: Sequence[str], qrels: Mapping[str, int]) -> tuple[float, float]:
    """(nDCG@10, Recall@10) of one ranked docid list, as the official ``compute_metric`` (pytrec_eval).

    Run scores are ``-(index + 1)``; a docid listed twice keeps its later score (a dict, as official).
    """
    if not docids or not qrels:
        return 0.0, 0.0
    run = {"1": {d: -float(i + 1) for i, d in enumerate(docids)}}
    values = evaluate(run, {"1": dict(qrels)}, ["ndcg_cut_10", "recall_10"], per_query=True)["1"]
    return values["ndcg_cut_10"], values["recall_10"]


def ndcg_at_10(docids: Sequence[str], qrels: Mapping[str, int]) -> float:
    """nDCG@10 (trec_eval, graded gains) of ``docids`` in list order against ``{docid: grade}``.

    Examples:
        >>> round(ndcg_at_10(["x", "a"], {"a": 1}), 4)
        0.6309
    """
    return _metrics(list(docids), {str(d): int(g) for d, g in qrels.items() if int(g) > 0})[0]


def multiview_score(
    completion: str,
    *,
    label: str,
    initial_list: Sequence[str],
    relevant_docids: Sequence[str],
    variant: Variant = "official",
    weights: tuple[float, float, float] = (1.0, 0.2, 0.1),
    p: float = 0.9,
) -> float:
    """ReasonRank's multi-view ranking reward of one completion: ``w0·nDCG@10 + w1·Recall@10 + w2·RBO``.

    ``label`` is the teacher ranking over window positions (``"[3] > [7] > …"``), ``initial_list`` the docids
    in prompt order (position ``[i]`` is ``initial_list[i-1]``), ``relevant_docids`` the binary positives.

    ``variant="official"`` is verl's ``ranking.compute_score`` (model-reference §3.3), quirks kept because the
    released checkpoints were trained on them: the format regex is case-sensitive (no match: −1); a
    prediction whose id count or number of distinct ids differs from the label's scores 0; ids above
    ``len(initial_list)`` are dropped but id ``0`` maps to the *last* passage (Python's ``[-1]``); RBO is the
    ``rbo`` package's default ``p=1`` (average overlap). ``variant="paper"`` is Eq. 4 as written: the same,
    except that an id outside ``1..n`` (id 0 included) scores 0 and RBO is p-weighted with ``p``.
    Returns a float in [−1, sum(weights)].

    Raises InvalidInputError when ``relevant_docids`` is empty (the official code raises KeyError there).
    """
    if variant not in ("official", "paper"):
        raise InvalidInputError(f"variant must be 'official' or 'paper', got {variant!r}")
    if not relevant_docids:
        raise InvalidInputError("relevant_docids is empty: the ranking reward needs at least one relevant docid")
    match = _OFFICIAL_RE.search(completion)
    if match is None:
        return -1.0
    predicted, teacher = _digit_tokens(match.group(1)), _digit_tokens(label)
    if len(predicted) != len(teacher) or len(set(predicted)) != len(set(teacher)):
        return 0.0
    try:
        indices = [int(tok) - 1 for tok in predicted]
    except ValueError:  # isdigit() accepts "²", int() does not: official returns 0
        return 0.0
    n = len(initial_list)
    if variant == "paper" and any(not 0 <= i < n for i in indices):
        return 0.0
    docids = [str(initial_list[i]) for i in indices if i < n]  # official: i == -1 (id 0) is the last passage
    ndcg, recall = _metrics(docids, {str(d): 1 for d in relevant_docids})
    if len(set(predicted)) != len(predicted) or len(set(teacher)) != len(teacher):
        overlap = 0.0  # the rbo package rejects duplicates; only reachable when the label repeats ids
    else:
        overlap = rbo(predicted, teacher, p=1.0 if variant == "official" else p)
    w_ndcg, w_recall, w_rbo = weights
    return w_ndcg * ndcg + w_recall * recall + w_rbo * overlap


def rearank_score(
    completion: str,
    *,
    initial_list: Sequence[str],
    qrels: Mapping[str, int],
    weights: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> float:
    """REARANK's reward (paper §3, model-reference §5.2): ``0.8·r_rank + 0.1·r_format1 + 0.1·r_format2``.

    ``r_rank = (r_rerank − r_init) / (r* − r_init)``: nDCG@10 (graded ``qrels``) of the generated order, of
    ``initial_list`` as given, and of the best order of the same candidates. The generated order is read with
    the REARANK inference parser (missing ids appended, so a partial answer is scored as the model would be
    used). ``r_format1`` = 1 when ``<think>…</think>`` and ``<answer>…</answer>`` are both present,
    ``r_format2`` = 1 when the answer is exactly ``[i] > [j] > …``.

    Degenerate case (the paper leaves it open; its data filter avoids it): when ``r* == r_init`` the initial
    order is already the best one, so there is nothing to improve and ``r_rank = (r_rerank − r*) / r*`` — 0 for
    keeping a best order, negative for breaking it — or 0 when no candidate is relevant (``r* = 0``).

    Examples:
        >>> rearank_score("<think>x</think><answer>[2] > [1]</answer>", initial_list=["a", "b"], qrels={"b": 2})
        1.0
    """
    n = len(initial_list)
    grades = {str(d): int(g) for d, g in qrels.items() if int(g) > 0}
    generated = [str(initial_list[i]) for i in parse_ranking(completion, n, style="rearank").order]
    initial = [str(d) for d in initial_list]
    best = sorted(initial, key=lambda d: -grades.get(d, 0))
    r_rerank, r_init, r_best = (_metrics(x, grades)[0] for x in (generated, initial, best))
    if math.isclose(r_best, r_init):
        r_rank = 0.0 if r_best == 0 else (r_rerank - r_best) / r_best
    else:
        r_rank = (r_rerank - r_init) / (r_best - r_init)
    has_tags = re.search(r"<think>.*?</think>", completion, re.DOTALL) is not None
    answer = _ANSWER_BLOCK.search(completion)
    has_tags = has_tags and answer is not None
    well_formed = answer is not None and _BRACKET_LIST.fullmatch(answer.group(1)) is not None
    w_rank, w_format1, w_format2 = weights
    return w_rank * r_rank + w_format1 * float(has_tags) + w_format2 * float(well_formed)


# ---------------------------------------------------------------------------------------------- TRL wrappers


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a chat-message list (its assistant turns, joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        turns = [m for m in completion if m.get("role", "assistant") == "assistant"]
        return "".join(str(m.get("content", "")) for m in turns)
    raise InvalidInputError(f"a completion must be a str or a list of chat messages, got {type(completion).__name__}")


def _column(name: str, values: Any, count: int, *, decode: bool = True) -> list[Any]:
    if values is None:
        raise InvalidInputError(f"the reward needs the dataset column {name!r}; add it to the training dataset")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != count:
        raise InvalidInputError(
            f"column {name!r} must hold one value per completion ({count}), got {type(values).__name__}"
        )
    if not decode:
        return list(values)
    return [json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v for v in values]


def multiview_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    label: Sequence[str] | None = None,
    initial_list: Sequence[Any] | None = None,
    relevant_docids: Sequence[Any] | None = None,
    variant: Variant = "official",
    **columns: Any,
) -> list[float]:
    """TRL reward function for :func:`multiview_score`; needs the columns ``label``, ``initial_list``,
    ``relevant_docids`` (other columns, e.g. ``final_list`` or TRL's ``trainer_state``, are ignored).

    Examples:
        >>> multiview_reward(["p"], [[{"role": "assistant", "content": "<think></think><answer>[1]</answer>"}]],
        ...                  label=["[1]"], initial_list=['["d1"]'], relevant_docids=['["d1"]'])
        [1.3]
    """
    n = len(completions)
    labels, lists, positives = (
        _column("label", label, n, decode=False),  # "[3] > [1]" is not JSON
        _column("initial_list", initial_list, n),
        _column("relevant_docids", relevant_docids, n),
    )
    return [
        multiview_score(completion_text(c), label=lab, initial_list=lst, relevant_docids=pos, variant=variant)
        for c, lab, lst, pos in zip(completions, labels, lists, positives)
    ]


def rearank_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    initial_list: Sequence[Any] | None = None,
    qrels: Sequence[Any] | None = None,
    **columns: Any,
) -> list[float]:
    """TRL reward function for :func:`rearank_score`; needs the columns ``initial_list`` and ``qrels``."""
    n = len(completions)
    lists, judgments = _column("initial_list", initial_list, n), _column("qrels", qrels, n)
    return [
        rearank_score(completion_text(c), initial_list=lst, qrels=q) for c, lst, q in zip(completions, lists, judgments)
    ]
