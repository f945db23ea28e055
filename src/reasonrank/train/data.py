"""Training data: ReasonRank's released layouts, the self-consistency filter and the example builders.

Torch-free. A :class:`TrainingList` is one query with its candidate window (``initial_list``, prompt order),
optionally the teacher's ``final_list`` and ``reasoning`` and the binary ``relevant_docids``. Examples are
rendered by the *same* template code the :class:`~reasonrank.Reranker` uses at inference
(:meth:`Template.messages_from_contents` + :meth:`Template.render_messages`), so training and inference prompts
cannot drift. Examples are prompt–completion rows in TRL's *standard* (string) form: the prompt is the final
rendered string, chat template and ``ftfy`` included, and TRL computes the loss on the completion only.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._errors import InvalidInputError
from .._types import Passage
from ..prompts import Template, get_template
from .rewards import ndcg_at_10

__all__ = [
    "FilterReport",
    "TrainingList",
    "answer_string",
    "expand_initial_states",
    "grpo_example",
    "lists_from_collection",
    "load_reasonrank_jsonl",
    "load_rl_parquet",
    "load_sft_json",
    "rearank_example",
    "self_consistency_filter",
    "sft_example",
    "write_reasonrank_jsonl",
]

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


@dataclass
class TrainingList:
    """One training query: ``passages`` in prompt order (``initial_list`` = their docids)."""

    qid: str
    query: str
    passages: list[Passage]
    dataset: str = ""
    final_list: list[str] | None = None
    reasoning: str | None = None
    relevant_docids: list[str] = field(default_factory=list)
    #: graded judgments of the candidates (REARANK), ``{docid: grade}``
    qrels: dict[str, int] = field(default_factory=dict)

    @property
    def initial_list(self) -> list[str]:
        return [p.docid or str(i) for i, p in enumerate(self.passages)]


def _text_dir(directory: Path, what: str) -> dict[str, str]:
    """``id_query/`` or ``id_doc/``: JSON files of ``{id: text}`` objects (or JSONL of ``{"id", "text"}``)."""
    if not directory.is_dir():
        raise InvalidInputError(f"{directory}: the {what} directory is missing; pass its path")
    texts: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".json", ".jsonl"):
            continue
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        try:
            data = json.loads(raw)
            rows: Iterable[Any] = data.items() if isinstance(data, dict) else data
        except json.JSONDecodeError:
            rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        for row in rows:
            if isinstance(row, tuple):
                texts[str(row[0])] = row[1] if isinstance(row[1], str) else str(row[1].get("text", row[1]))
            elif isinstance(row, dict) and ("id" in row or "_id" in row):
                texts[str(row.get("id", row.get("_id")))] = str(row.get("text", row.get("contents", "")))
            else:
                raise InvalidInputError(f"{path}: expected {{id: text}} objects or records with 'id' and 'text'")
    return texts


def _need(path: PathLike, number: int, record: Mapping[str, Any], columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in record]
    if missing:
        raise InvalidInputError(f"{path}, record {number}: missing column(s) {', '.join(missing)}")


_JSONL_COLUMNS = ("dataset", "qid", "initial_list", "final_list", "reasoning", "relevant_docids")


def load_reasonrank_jsonl(
    path: PathLike, *, id_query: PathLike | None = None, id_doc: PathLike | None = None
) -> list[TrainingList]:
    """Read ``training_data_all.jsonl`` (reasonrank_data_13k) with its ``id_query/`` and ``id_doc/`` texts.

    The directories default to ``id_query/`` and ``id_doc/`` beside the file. Records are numbered from 1.
    Raises InvalidInputError naming the file and record for a missing column, query id or passage id.
    """
    path = Path(path)
    queries = _text_dir(Path(id_query) if id_query else path.parent / "id_query", "id_query")
    docs = _text_dir(Path(id_doc) if id_doc else path.parent / "id_doc", "id_doc")
    lists: list[TrainingList] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            _need(path, number, record, _JSONL_COLUMNS)
            qid = str(record["qid"])
            if qid not in queries:
                raise InvalidInputError(f"{path}, record {number}: query id {qid!r} has no text in id_query/")
            unknown = [d for d in record["initial_list"] if str(d) not in docs]
            if unknown:
                raise InvalidInputError(f"{path}, record {number}: passage id(s) {unknown[:3]} have no text in id_doc/")
            lists.append(
                TrainingList(
                    qid=qid,
                    query=queries[qid],
                    passages=[Passage(docs[str(d)], docid=str(d)) for d in record["initial_list"]],
                    dataset=str(record["dataset"]),
                    final_list=[str(d) for d in record["final_list"]],
                    reasoning=record["reasoning"],
                    relevant_docids=[str(d) for d in record["relevant_docids"]],
                )
            )
    return lists


def write_reasonrank_jsonl(lists: Iterable[TrainingList], path: PathLike) -> None:
    """Write ``lists`` in the ``training_data_all.jsonl`` layout, texts in ``id_query/`` and ``id_doc/`` beside it
    (``train.json`` in each), so that :func:`load_reasonrank_jsonl` reads them back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    queries: dict[str, str] = {}
    docs: dict[str, str] = {}
    with open(path, "w", encoding="utf-8") as f:
        for x in lists:
            queries[x.qid] = x.query
            docs.update((d, p.text) for d, p in zip(x.initial_list, x.passages))
            record = {
                "dataset": x.dataset,
                "qid": x.qid,
                "initial_list": x.initial_list,
                "final_list": x.final_list,
                "reasoning": x.reasoning,
                "relevant_docids": x.relevant_docids,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    for name, texts in (("id_query", queries), ("id_doc", docs)):
        (path.parent / name).mkdir(exist_ok=True)
        (path.parent / name / "train.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


def load_sft_json(path: PathLike, *, tokenizer: Any = None, template: str | Template = "reasonrank") -> list[dict]:
    """Read the released SFT JSON (LLaMA-Factory alpaca columns ``instruction``, ``output``, ``system``) as
    prompt–completion rows, the prompt rendered by ``template``'s chat rendering (as at inference)."""
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    if not isinstance(records, list):
        raise InvalidInputError(f"{path}: expected a JSON list of alpaca records")
    tpl = get_template(template)
    rows = []
    for number, record in enumerate(records, start=1):
        _need(path, number, record, ("instruction", "output"))
        messages = [{"role": "user", "content": record["instruction"]}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": record["system"]})
        rows.append({"prompt": tpl.render_messages(messages, tokenizer), "completion": record["output"]})
    return rows


def load_rl_parquet(path: PathLike, *, tokenizer: Any = None, template: str | Template = "reasonrank") -> list[dict]:
    """Read the released RL parquet (verl) as GRPO rows for :func:`~reasonrank.train.rewards.multiview_reward`:
    ``prompt`` (the chat messages rendered as at inference), ``label``, and ``initial_list``,
    ``relevant_docids``, ``final_list`` as JSON strings, plus ``dataset``. Needs ``pyarrow`` (``datasets``)."""
    import pyarrow.parquet as pq

    tpl = get_template(template)
    rows = []
    for number, record in enumerate(pq.read_table(path).to_pylist(), start=1):
        extra = record.get("extra_info") or {}
        reward_model = record.get("reward_model") or {}
        merged = {**extra, **record}
        if "label" not in merged and "ground_truth" in reward_model:
            merged["label"] = reward_model["ground_truth"]
        _need(path, number, merged, ("prompt", "initial_list", "relevant_docids", "label"))
        messages = [dict(m) for m in merged["prompt"]]
        rows.append(
            {
                "prompt": tpl.render_messages(messages, tokenizer),
                "label": merged["label"],
                "initial_list": json.dumps([str(d) for d in merged["initial_list"]]),
                "relevant_docids": json.dumps([str(d) for d in merged["relevant_docids"]]),
                "final_list": json.dumps([str(d) for d in merged.get("final_list") or []]),
                "dataset": str(merged.get("dataset", merged.get("data_source", ""))),
            }
        )
    return rows


def lists_from_collection(
    queries: Mapping[str, str],
    run: Mapping[str, Mapping[str, float]],
    corpus: Mapping[str, Any],
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    *,
    depth: int = 20,
    dataset: str = "",
) -> list[TrainingList]:
    """Training lists from what the evaluation readers load (:func:`reasonrank.io.read_queries`,
    ``read_run``, ``read_corpus``, ``read_qrels``): each query's top-``depth`` of ``run`` by score.
    Queries without a run are skipped (logged); a docid missing from ``corpus`` raises."""
    lists = []
    for qid, query in queries.items():
        scores = run.get(qid)
        if not scores:
            logger.info("query %s has no run; skipped", qid)
            continue
        top = sorted(scores, key=lambda d: -scores[d])[:depth]
        missing = [d for d in top if d not in corpus]
        if missing:
            raise InvalidInputError(f"query {qid}: docid(s) {missing[:3]} of the run are not in the corpus")
        passages = [c if isinstance(c, Passage) else Passage(str(c), docid=d) for d, c in ((d, corpus[d]) for d in top)]
        judged = dict((qrels or {}).get(qid, {}))
        lists.append(
            TrainingList(
                qid=qid,
                query=query,
                passages=passages,
                dataset=dataset,
                relevant_docids=[d for d in top if judged.get(d, 0) > 0],
                qrels={d: int(g) for d, g in judged.items() if d in top},
            )
        )
    return lists


@dataclass
class FilterReport:
    """What :func:`self_consistency_filter` kept: ``{dataset: (kept, total)}``."""

    alpha: float
    inclusive: bool
    per_dataset: dict[str, tuple[int, int]]

    @property
    def kept(self) -> int:
        return sum(k for k, _ in self.per_dataset.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.per_dataset.values())

    def __str__(self) -> str:
        op = ">=" if self.inclusive else ">"
        lines = [f"self-consistency filter: nDCG@10 {op} {self.alpha}: kept {self.kept} of {self.total}"]
        lines += [f"  {d}: {k} / {t}" for d, (k, t) in sorted(self.per_dataset.items())]
        return "\n".join(lines)


def self_consistency_filter(
    lists: Iterable[TrainingList], alpha: float = 0.4, *, inclusive: bool
) -> tuple[list[TrainingList], FilterReport]:
    """Keep lists whose teacher ``final_list`` scores nDCG@10 above ``alpha`` against ``relevant_docids`` (binary).

    The paper (§4.1.5) uses α = 0.4; its README says keep "higher than" the threshold, and whether exactly α
    passes is unspecified, hence the required ``inclusive`` (``True``: ``>=``). Lists without a ``final_list``
    or with no relevant docid are dropped.
    """
    kept: list[TrainingList] = []
    totals: Counter[str] = Counter()
    kept_counts: Counter[str] = Counter()
    for item in lists:
        totals[item.dataset] += 1
        if not item.final_list or not item.relevant_docids:
            continue
        score = ndcg_at_10(item.final_list, dict.fromkeys(item.relevant_docids, 1))
        if score > alpha or (inclusive and score >= alpha):
            kept.append(item)
            kept_counts[item.dataset] += 1
    report = FilterReport(alpha, inclusive, {d: (kept_counts[d], totals[d]) for d in totals})
    logger.info("%s", report)
    return kept, report


def answer_string(final_list: Sequence[str], initial_list: Sequence[str]) -> str:
    """``final_list`` as window positions, ``"[i] > [j] > …"`` (1-based positions in ``initial_list``).

    Examples:
        >>> answer_string(["c", "a", "b"], ["a", "b", "c"])
        '[3] > [1] > [2]'
    """
    position = {d: i + 1 for i, d in enumerate(initial_list)}
    unknown = [d for d in final_list if d not in position]
    if unknown:
        raise InvalidInputError(f"final_list has docid(s) {unknown[:3]} that are not in initial_list")
    return " > ".join(f"[{position[d]}]" for d in final_list)


def _prompt(item: TrainingList, template: str | Template, tokenizer: Any, max_passage_tokens: int | None) -> str:
    tpl = get_template(template)
    if max_passage_tokens is None and tpl.truncates_by_tokens and tokenizer is not None:
        max_passage_tokens = tpl.default_max_passage_tokens  # as Reranker does
    contents = [
        tpl.passage_content(p, tokenizer=tokenizer, max_passage_tokens=max_passage_tokens) for p in item.passages
    ]
    return tpl.render_messages(tpl.messages_from_contents(item.query, contents), tokenizer)


def sft_example(
    item: TrainingList,
    *,
    template: str | Template = "reasonrank",
    tokenizer: Any = None,
    max_passage_tokens: int | None = None,
    answer_format: str = "<think>{reasoning}</think>\n<answer>{answer}</answer>",
) -> dict[str, str]:
    """A cold-start SFT row ``{"prompt", "completion"}``: the exact inference prompt of ``item``'s window, and
    ``<think>{reasoning}</think>\\n<answer>[i] > [j] > …</answer>`` (the released SFT data's exact whitespace is
    unknown; the inference parser accepts any, model-reference §3.2)."""
    if item.final_list is None or item.reasoning is None:
        raise InvalidInputError(f"query {item.qid}: an SFT example needs final_list and reasoning")
    answer = answer_string(item.final_list, item.initial_list)
    return {
        "prompt": _prompt(item, template, tokenizer, max_passage_tokens),
        "completion": answer_format.format(reasoning=item.reasoning, answer=answer),
    }


def grpo_example(
    item: TrainingList,
    *,
    template: str | Template = "reasonrank",
    tokenizer: Any = None,
    max_passage_tokens: int | None = None,
) -> dict[str, str]:
    """A GRPO row for :func:`~reasonrank.train.rewards.multiview_reward` (lists stored as JSON strings)."""
    if item.final_list is None or not item.relevant_docids:
        raise InvalidInputError(f"query {item.qid}: a GRPO example needs final_list and relevant_docids")
    return {
        "prompt": _prompt(item, template, tokenizer, max_passage_tokens),
        "label": answer_string(item.final_list, item.initial_list),
        "initial_list": json.dumps(item.initial_list),
        "relevant_docids": json.dumps(item.relevant_docids),
        "final_list": json.dumps(item.final_list),
        "dataset": item.dataset,
    }


def rearank_example(
    item: TrainingList,
    *,
    template: str | Template = "rearank",
    tokenizer: Any = None,
    max_passage_tokens: int | None = None,
) -> dict[str, str]:
    """A GRPO row for :func:`~reasonrank.train.rewards.rearank_reward` (``initial_list`` and ``qrels`` as JSON)."""
    return {
        "prompt": _prompt(item, template, tokenizer, max_passage_tokens),
        "initial_list": json.dumps(item.initial_list),
        "qrels": json.dumps(item.qrels),
        "dataset": item.dataset,
    }


def expand_initial_states(
    item: TrainingList,
    *,
    samples: int = 50,
    size: int = 20,
    min_ndcg: float = 0.1,
    floor_on: Literal["initial", "best"] = "initial",
    seed: int = 0,
) -> tuple[list[TrainingList], dict[str, int]]:
    """REARANK's initial-state expansion (paper §3, model-reference §5.2): draw ``size`` candidates at random
    from ``item``'s list (its top-100) ``samples`` times, each draw in random order, judged by ``item.qrels``.

    Draws with no relevant passage, or whose nDCG@10 is below ``min_ndcg``, are dropped. The paper says the
    floor applies to the *initial* order (§4.1) in one place and to the *best* order in another, hence
    ``floor_on``. Returns ``(kept, counts)`` with counts ``sampled``, ``no_relevant``, ``below_floor``, ``kept``.
    """
    if floor_on not in ("initial", "best"):
        raise InvalidInputError(f"floor_on must be 'initial' or 'best', got {floor_on!r}")
    if not item.qrels:
        raise InvalidInputError(f"query {item.qid}: initial-state expansion needs graded qrels (item.qrels)")
    rng = random.Random(f"{seed}:{item.qid}")
    counts = Counter({"sampled": 0, "no_relevant": 0, "below_floor": 0, "kept": 0})
    kept = []
    for _ in range(samples):
        passages = rng.sample(item.passages, min(size, len(item.passages)))
        counts["sampled"] += 1
        docids = [p.docid or "" for p in passages]
        grades = {d: g for d, g in item.qrels.items() if d in docids and g > 0}
        if not grades:
            counts["no_relevant"] += 1
            continue
        order = docids if floor_on == "initial" else sorted(docids, key=lambda d: -grades.get(d, 0))
        if ndcg_at_10(order, grades) < min_ndcg:
            counts["below_floor"] += 1
            continue
        counts["kept"] += 1
        kept.append(
            TrainingList(
                item.qid,
                item.query,
                passages,
                item.dataset,
                relevant_docids=list(grades),
                qrels={d: item.qrels[d] for d in docids if d in item.qrels},
            )
        )
    return kept, dict(counts)
