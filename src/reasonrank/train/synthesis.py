"""Teacher synthesis of reasoning-intensive training lists (ReasonRank §3: DeepSeek-R1 as the teacher).

For each :class:`~reasonrank.train.TrainingList`, a teacher model behind any backend (e.g. DeepSeek-R1 on an
OpenAI-compatible server) gives

1. pointwise relevance labels (``relevant_docids``) — one yes/no question per passage, skipped for lists that
   already carry gold ``relevant_docids``; and
2. a listwise ranking with its reasoning, asked with the *inference* prompt of ``template`` (so the teacher
   sees what the student will see), parsed with the inference parser into ``final_list`` and ``reasoning``.

Then the self-consistency filter keeps lists whose teacher ranking agrees with the labels. Every generation
goes through the backend's :meth:`~reasonrank.backends.Backend.stream` (its own concurrency) and, with
``cache=``, through :class:`~reasonrank.cache.CachedBackend`: an interrupted run resumes without asking the
teacher again for anything it already answered.

The paper's exact teacher prompts are not released; the pointwise prompt below is this library's.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .._errors import InvalidInputError
from .._types import SamplingParams
from ..backends import Backend, GenerationRequest
from ..cache import CachedBackend
from ..parsing import parse_ranking
from ..prompts import get_template
from .data import FilterReport, TrainingList, _prompt, self_consistency_filter

__all__ = ["POINTWISE_PROMPT", "synthesize"]

logger = logging.getLogger(__name__)

POINTWISE_PROMPT = (
    "Judge whether the passage is relevant to the search query, i.e. whether it helps answer it, even if the "
    "connection takes reasoning to see.\n\nSearch Query: {query}\n\nPassage: {passage}\n\n"
    "Think it through, then answer with <answer>yes</answer> or <answer>no</answer>."
)
_YES = re.compile(r"<answer>\s*yes\s*</answer>", re.IGNORECASE)


def _stream(backend: Backend, requests: list[GenerationRequest], progress: bool, what: str) -> list[str]:
    from tqdm.auto import tqdm

    texts: list[str | None] = [None] * len(requests)
    with tqdm(total=len(requests), desc=what, disable=not progress) as bar:
        for index, generation in backend.stream(requests):
            texts[index] = generation.text
            bar.update()
    missing = [r.key for r, t in zip(requests, texts) if t is None]
    if missing:
        raise InvalidInputError(f"the backend returned no generation for {missing[:3]}")
    return [t or "" for t in texts]


def synthesize(
    lists: Sequence[TrainingList],
    backend: Backend,
    *,
    template: str = "reasonrank",
    tokenizer: Any = None,
    sampling: SamplingParams | None = None,
    cache: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
    alpha: float | None = 0.4,
    inclusive: bool = False,
    progress: bool = True,
) -> tuple[list[TrainingList], FilterReport | None]:
    """Label and rank ``lists`` with a teacher; returns ``(kept lists, filter report)`` (report ``None`` when
    ``alpha=None``, which keeps every list that got a ranking and at least one relevant passage).

    ``cache`` (a JSONL path) makes the run resumable; ``model_id`` names the teacher in it (required with
    ``cache``). ``sampling`` defaults to the backend's defaults with ``max_tokens=8192`` (R1 reasons at length).
    """
    if cache is not None:
        if not model_id:
            raise InvalidInputError("cache= needs model_id= naming the teacher (cached outputs are keyed by it)")
        backend = CachedBackend(backend, cache, model_id=model_id)
    sampling = sampling or SamplingParams(max_tokens=8192)
    tpl = get_template(template)
    try:
        pointwise: list[GenerationRequest] = []
        owners: list[tuple[int, str]] = []
        for i, item in enumerate(lists):
            if item.relevant_docids:
                continue
            for passage in item.passages:
                text = POINTWISE_PROMPT.format(query=item.query, passage=passage.text)
                messages = ({"role": "user", "content": text},)
                pointwise.append(
                    GenerationRequest(
                        tpl.render_messages(messages, tokenizer),
                        messages,
                        sampling,
                        query=item.query,
                        docids=(passage.docid or "",),
                        key=f"{item.qid} label {passage.docid}",
                    )
                )
                owners.append((i, passage.docid or ""))
        labelled = [replace(item, relevant_docids=list(item.relevant_docids)) for item in lists]
        for (i, docid), text in zip(owners, _stream(backend, pointwise, progress, "teacher labels")):
            if _YES.search(text):
                labelled[i].relevant_docids.append(docid)

        listwise = [
            GenerationRequest(
                _prompt(item, tpl, tokenizer, None),
                (),
                sampling,
                query=item.query,
                docids=tuple(item.initial_list),
                key=f"{item.qid} ranking",
            )
            for item in labelled
        ]
        for item, text in zip(labelled, _stream(backend, listwise, progress, "teacher rankings")):
            parsed = parse_ranking(text, len(item.passages), style=tpl.parser_style)
            item.final_list = [item.initial_list[j] for j in parsed.order]
            item.reasoning = parsed.reasoning if parsed.reasoning is not None else text
            if parsed.repairs:
                logger.info("%s: teacher ranking repaired (%s)", item.qid, ", ".join(r.kind for r in parsed.repairs))
    finally:
        if isinstance(backend, CachedBackend):
            backend.close(inner=False)  # the caller owns the teacher backend
    if alpha is None:
        return [x for x in labelled if x.relevant_docids], None
    return self_consistency_filter(labelled, alpha, inclusive=inclusive)
