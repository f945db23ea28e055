"""Shared driver for the REARANK and RankGPT fidelity tests: our Reranker on the inputs of an official run.

Each official query record (tests/fixtures/official_{rearank,rankgpt}.json) holds its candidates as pool
indices and first-stage scores (candidate ``j`` has docid ``f"{qid}-d{j}"``), the model calls the official
code made (window bounds, passage count, sha256 prefix of the rendered prompt), the final order and the final
scores. The fake model (tests/fake_outputs.py) answers as a function of the prompt bytes, so any difference in
any prompt changes every later output.
"""

from __future__ import annotations

import json
from pathlib import Path

from fake_outputs import fake_output, prompt_sha
from reasonrank import Passage, Reranker
from reasonrank.backends import FakeBackend

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return json.load(f)


def passages_for(record: dict, pool: list[dict]) -> list:
    """The record's candidates, alternating plain mappings and Passage objects (both must give the same prompt)."""
    out: list = []
    for j, (p, score) in enumerate(zip(record["pool"], record["scores_in"])):
        doc = pool[p]["doc"]
        docid = f"{record['qid']}-d{j}"
        if j % 2:
            text = doc.get("contents", doc.get("text"))
            out.append(Passage(text=text, title=doc.get("title"), docid=docid, score=score))
        else:
            out.append({**doc, "docid": docid, "score": score})
    return out


def qid_of(docid: str) -> str:
    return docid.rsplit("-d", 1)[0]


class RecordingModel:
    """A FakeBackend responder recording, per query, each call's passage count, prompt hash and messages hash."""

    def __init__(self, *, tags: bool) -> None:
        self.tags = tags
        self.calls: dict[str, list[tuple[int, str]]] = {}
        self.messages: dict[str, list[str]] = {}

    def __call__(self, request) -> str:
        num = len(request.docids)
        qid = qid_of(request.docids[0])
        self.calls.setdefault(qid, []).append((num, prompt_sha(request.prompt)[:16]))
        self.messages.setdefault(qid, []).append(
            prompt_sha(json.dumps([dict(m) for m in request.messages], ensure_ascii=False))[:16]
        )
        return fake_output(request.prompt, num, tags=self.tags)


def run_ours(
    records: list[dict],
    pool: list[dict],
    *,
    template: str,
    tokenizer,
    tags: bool,
    window: int,
    step: int,
    window_mode: str,
    top_k: int | None,
):
    """Rerank ``records`` in one rerank_batch call; returns (rankings by qid, RecordingModel)."""
    model = RecordingModel(tags=tags)
    reranker = Reranker(FakeBackend(model), template=template, tokenizer=tokenizer, progress=False)
    rankings = reranker.rerank_batch(
        [r["query"] for r in records],
        [passages_for(r, pool) for r in records],
        qids=[r["qid"] for r in records],
        window=window,
        step=step,
        top_k=top_k,
        window_mode=window_mode,
    )
    return {r.qid: r for r in rankings}, model


def assert_matches_official(record: dict, ranking, model: RecordingModel) -> None:
    """Windows, prompt bytes (hash), final order and positional scores equal the official run's."""
    qid = record["qid"]
    # The official code also calls the model for windows of 0 or 1 passages, which cannot change anything;
    # we make no call for them.
    official = [c for c in record["calls"] if c[2] >= 2]
    assert [(w.start, w.end) for w in ranking.windows] == [(c[0], c[0] + c[2]) for c in official], qid
    assert model.calls.get(qid, []) == [(c[2], c[3]) for c in official], qid
    if official and len(official[0]) == 5:  # RankGPT runs also hash the messages (what an API backend sends)
        assert model.messages[qid] == [c[4] for c in official], qid
    assert ranking.order == record["order"], qid
    assert ranking.scores("positional") == record["scores"], qid
    assert ranking.docids == [f"{qid}-d{j}" for j in record["order"]]
