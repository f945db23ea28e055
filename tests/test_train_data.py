"""Training data: the released layouts, the self-consistency filter, examples rendered as at inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonrank import InvalidInputError, Reranker
from reasonrank.backends import FakeBackend
from reasonrank.parsing import parse_ranking
from reasonrank.train import (
    TrainingList,
    answer_string,
    expand_initial_states,
    grpo_example,
    lists_from_collection,
    load_reasonrank_jsonl,
    load_sft_json,
    multiview_reward,
    rearank_example,
    rearank_reward,
    self_consistency_filter,
    sft_example,
)
from reasonrank.train.rewards import ndcg_at_10

DOCS = {f"doc{i}": f"Passage {i} about topic [{i}] " + "word " * (i * 60) for i in range(1, 7)}


def write_layout(root: Path, records: list[dict]) -> Path:
    (root / "id_query").mkdir()
    (root / "id_doc").mkdir()
    (root / "id_query" / "biology.json").write_text(json.dumps({"q1": "Why is the sky blue?", "q2": "What is [1]?"}))
    (root / "id_doc" / "biology.json").write_text(json.dumps(DOCS))
    path = root / "training_data_all.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def record(qid="q1", dataset="biology", final=None, relevant=("doc2",)) -> dict:
    initial = ["doc1", "doc2", "doc3", "doc4", "doc5"]
    return {
        "dataset": dataset,
        "qid": qid,
        "initial_list": initial,
        "final_list": final or ["doc2", "doc1", "doc3", "doc4", "doc5"],
        "reasoning": "Passage [2] answers it.",
        "relevant_docids": list(relevant),
    }


def test_load_the_released_jsonl_layout(tmp_path):
    lists = load_reasonrank_jsonl(write_layout(tmp_path, [record(), record("q2", "leetcode")]))
    assert [x.qid for x in lists] == ["q1", "q2"]
    assert lists[1].query == "What is [1]?"
    assert lists[0].initial_list == ["doc1", "doc2", "doc3", "doc4", "doc5"]
    assert lists[0].passages[2].text == DOCS["doc3"]
    assert lists[1].dataset == "leetcode"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"qid": "q9"}, r"record 2: query id 'q9'"),
        ({"initial_list": ["doc1", "nope"]}, r"record 2: passage id\(s\) \['nope'\]"),
        ({"reasoning": None}, None),
    ],
)
def test_load_errors_name_file_and_record(tmp_path, change, message):
    bad = record()
    if change.get("reasoning", 1) is None:
        del bad["reasoning"]
        message = "record 2: missing column"
    else:
        bad.update(change)
    path = write_layout(tmp_path, [record(), bad])
    with pytest.raises(InvalidInputError, match=message) as e:
        load_reasonrank_jsonl(path)
    assert str(path) in str(e.value)


def test_self_consistency_filter_threshold_and_report(tmp_path):
    path = write_layout(
        tmp_path,
        [
            record(),  # relevant doc2 ranked first: nDCG 1
            record("q2", final=["doc1", "doc3", "doc4", "doc5", "doc2"]),  # nDCG@10 = 1/log2(6) = 0.387
            record("q2", "leetcode", final=["doc1", "doc2", "doc3", "doc4", "doc5"]),  # 1/log2(3) = 0.631
        ],
    )
    lists = load_reasonrank_jsonl(path)
    kept, report = self_consistency_filter(lists, 0.4, inclusive=False)
    assert [x.qid for x in kept] == ["q1", "q2"]
    assert report.per_dataset == {"biology": (1, 2), "leetcode": (1, 1)}
    assert (report.kept, report.total) == (2, 3)
    assert "biology: 1 / 2" in str(report)
    # the threshold itself: the explicit `inclusive` decides
    at = ndcg_at_10(["doc1", "doc2"], {"doc2": 1})  # the leetcode list's score, 1/log2(3)
    assert at == pytest.approx(0.6309, abs=1e-4)
    assert len(self_consistency_filter(lists, at, inclusive=True)[0]) == 2
    assert len(self_consistency_filter(lists, at, inclusive=False)[0]) == 1
    with pytest.raises(TypeError):
        self_consistency_filter(lists, 0.4)  # type: ignore[call-arg]


def test_sft_prompt_is_byte_for_byte_what_the_reranker_sends(tmp_path, qwen25_tokenizer):
    item = load_reasonrank_jsonl(write_layout(tmp_path, [record("q2")]))[0]
    for tokenizer in (None, qwen25_tokenizer):  # built-in ChatML, and Qwen's real tokenizer with 512-token cuts
        fake = FakeBackend()
        Reranker(fake, tokenizer=tokenizer, progress=False).rerank(item.query, item.passages)
        sent = fake.calls[0][0].prompt
        example = sft_example(item, tokenizer=tokenizer)
        assert example["prompt"] == sent
    expected = "<think>Passage [2] answers it.</think>\n<answer>[2] > [1] > [3] > [4] > [5]</answer>"
    assert example["completion"] == expected
    # the inference parser reads the SFT target back as the teacher's order
    assert parse_ranking(example["completion"], 5).order == (1, 0, 2, 3, 4)
    with pytest.raises(InvalidInputError, match="not in initial_list"):
        answer_string(["x"], ["a"])


def test_grpo_rows_feed_the_reward(tmp_path):
    item = load_reasonrank_jsonl(write_layout(tmp_path, [record()]))[0]
    row = grpo_example(item)
    assert row["label"] == "[2] > [1] > [3] > [4] > [5]"
    columns = {k: [v] for k, v in row.items() if k != "prompt"}
    teacher = "<think>t</think><answer>" + row["label"] + "</answer>"
    assert multiview_reward([row["prompt"]], [teacher], **columns) == [pytest.approx(1.3)]


def test_load_sft_json_renders_the_alpaca_rows(tmp_path):
    path = tmp_path / "reasonrank_sft-data.json"
    path.write_text(
        json.dumps(
            [
                {
                    "instruction": "rank these",
                    "output": "<think>a</think><answer>[1]</answer>",
                    "system": "You are RankLLM",
                },
                {"output": "x"},
            ]
        )
    )
    with pytest.raises(InvalidInputError, match=r"record 2: missing column\(s\) instruction"):
        load_sft_json(path)
    path.write_text(json.dumps([{"instruction": "rank these", "output": "o", "system": "S"}]))
    assert load_sft_json(path) == [
        {
            "prompt": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nrank these<|im_end|>\n<|im_start|>assistant\n",  # noqa: E501
            "completion": "o",
        }
    ]


def test_load_rl_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from reasonrank.train import load_rl_parquet

    table = pa.table(
        {
            "prompt": [[{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]],
            "initial_list": [["a", "b"]],
            "final_list": [["b", "a"]],
            "relevant_docids": [["b"]],
            "label": ["[2] > [1]"],
            "dataset": ["math-qa"],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    rows = load_rl_parquet(tmp_path / "train.parquet")
    assert rows[0]["prompt"].endswith("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert json.loads(rows[0]["relevant_docids"]) == ["b"]
    pq.write_table(table.drop(["label"]), tmp_path / "bad.parquet")
    with pytest.raises(InvalidInputError, match=r"bad.parquet, record 1: missing column\(s\) label"):
        load_rl_parquet(tmp_path / "bad.parquet")


def test_lists_from_collection_and_rearank_expansion():
    corpus = {f"d{i}": f"text {i}" for i in range(100)}
    run = {"q": {f"d{i}": 100.0 - i for i in range(100)}}
    qrels = {"q": {"d5": 3, "d50": 1, "d99": 2, "d7": 0}}
    lists = lists_from_collection({"q": "query", "none": "x"}, run, corpus, qrels, depth=100)
    assert len(lists) == 1 and lists[0].initial_list[:3] == ["d0", "d1", "d2"]
    assert lists[0].relevant_docids == ["d5", "d50", "d99"]
    kept, counts = expand_initial_states(lists[0], samples=50, size=20, seed=3)
    again, _ = expand_initial_states(lists[0], samples=50, size=20, seed=3)
    assert [x.initial_list for x in kept] == [x.initial_list for x in again]  # seeded
    assert counts["sampled"] == 50 and counts["kept"] == len(kept)
    assert counts["kept"] + counts["no_relevant"] + counts["below_floor"] == 50
    assert counts["no_relevant"] > 0  # 3 relevant in 100: many 20-draws have none
    assert all(x.qrels and len(x.passages) == 20 for x in kept)
    best, best_counts = expand_initial_states(lists[0], samples=50, size=20, seed=3, floor_on="best")
    assert best_counts["below_floor"] == 0 and len(best) >= len(kept)
    row = rearank_example(kept[0])
    assert row["prompt"].startswith("<|im_start|>system\nYou are DeepRerank")
    assert (
        rearank_reward(
            [row["prompt"]],
            ["<think>x</think><answer>[1]</answer>"],
            initial_list=[row["initial_list"]],
            qrels=[row["qrels"]],
        )[0]
        <= 1.0
    )
    with pytest.raises(InvalidInputError, match="graded qrels"):
        expand_initial_states(TrainingList("q", "x", []))
