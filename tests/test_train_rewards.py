"""The RL rewards against the worked values of model-reference §3.3 (executed official verl ranking.compute_score)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasonrank import InvalidInputError
from reasonrank.train.rewards import (
    completion_text,
    multiview_reward,
    multiview_score,
    rearank_reward,
    rearank_score,
)

INITIAL = [f"d{i}" for i in range(1, 21)]
RELEVANT = ["d3", "d7", "d15"]
TEACHER = [3, 7, 15] + [i for i in range(1, 21) if i not in (3, 7, 15)]
LABEL = " > ".join(f"[{i}]" for i in TEACHER)


def answer(order, think="I compare the passages.") -> str:
    return f"<think>{think}</think>\n<answer>" + " > ".join(f"[{i}]" for i in order) + "</answer>"


def score(completion: str, **kw) -> float:
    return multiview_score(completion, label=LABEL, initial_list=INITIAL, relevant_docids=RELEVANT, **kw)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (TEACHER, 1.3),
        (TEACHER[::-1], 0.0331),
        (list(range(1, 21)), 0.6009),  # nDCG 0.391 + 0.2 x recall 0.667 + 0.1 x AO 0.765
        (TEACHER[:-1], 0.0),  # one id missing
        ([*TEACHER[:-1], 3], 0.0),  # a duplicate id
        ([21 if i == 20 else i for i in TEACHER], 1.29975),  # [21] replacing [20]: dropped, AO lowers
    ],
)
def test_worked_values_of_the_official_reward(order, expected):
    assert score(answer(order)) == pytest.approx(expected, abs=5e-5)


def test_format_regex_is_case_sensitive_and_needs_think():
    assert score(answer(TEACHER).replace("<think>", "<THINK>").replace("</think>", "</THINK>")) == -1.0
    assert score("<answer>" + LABEL + "</answer>") == -1.0
    # bracket syntax is not checked: bare numbers earn the full reward
    assert score("<think>x</think><answer>" + " ".join(map(str, TEACHER)) + "</answer>") == pytest.approx(1.3)
    # a number int() rejects
    assert score(answer(TEACHER).replace("[20]", "[2²]")) == 0.0


def test_id_zero_maps_to_the_last_passage_officially_and_is_rejected_by_the_paper_variant():
    initial = ["a", "b", "c"]
    # "[0]" first: official maps it to initial_list[-1] = "c", the relevant passage, ranked first
    official = multiview_score(
        "<think>t</think><answer>[0] > [1] > [2]</answer>",
        label="[3] > [1] > [2]",
        initial_list=initial,
        relevant_docids=["c"],
    )
    # nDCG 1 + 0.2 x recall 1 + 0.1 x AO of ("0","1","2") vs ("3","1","2") = (0 + 1/2 + 2/3) / 3
    assert official == pytest.approx(1.2 + 0.1 * (0 + 1 / 2 + 2 / 3) / 3)
    paper = multiview_score(
        "<think>t</think><answer>[0] > [1] > [2]</answer>",
        label="[3] > [1] > [2]",
        initial_list=initial,
        relevant_docids=["c"],
        variant="paper",
    )
    assert paper == 0.0


def test_paper_variant_uses_p_weighted_rbo():
    official, paper = score(answer(range(1, 21))), score(answer(range(1, 21)), variant="paper")
    assert paper < official
    assert score(answer(TEACHER), variant="paper") < 1.3  # truncated p-weighted RBO of identical lists < 1
    with pytest.raises(InvalidInputError, match="variant"):
        score(answer(TEACHER), variant="verl")
    with pytest.raises(InvalidInputError, match="relevant_docids"):
        multiview_score(answer(TEACHER), label=LABEL, initial_list=INITIAL, relevant_docids=[])


def test_multiview_reward_has_trls_signature_and_reads_json_columns_and_messages():
    completions = [answer(TEACHER), [{"role": "assistant", "content": answer(TEACHER[::-1])}], "no format"]
    rewards = multiview_reward(
        ["p"] * 3,
        completions,
        label=[LABEL] * 3,
        initial_list=[json.dumps(INITIAL), INITIAL, json.dumps(INITIAL)],
        relevant_docids=[json.dumps(RELEVANT)] * 3,
        final_list=["[]"] * 3,
        trainer_state=None,
    )
    assert rewards == pytest.approx([1.3, 0.0331, -1.0], abs=5e-5)
    with pytest.raises(InvalidInputError, match="'label'"):
        multiview_reward(["p"], [answer(TEACHER)], initial_list=[INITIAL], relevant_docids=[RELEVANT])
    with pytest.raises(InvalidInputError, match="one value per completion"):
        multiview_reward(
            ["p"], [answer(TEACHER)], label=[LABEL, LABEL], initial_list=[INITIAL], relevant_docids=[RELEVANT]
        )
    with pytest.raises(InvalidInputError, match="chat messages"):
        completion_text(3)


def test_rearank_reward_is_the_normalised_improvement_plus_format():
    initial, qrels = ["a", "b", "c", "d"], {"c": 2, "a": 1}
    best = "<think>x</think><answer>[3] > [1] > [2] > [4]</answer>"
    same = "<think>x</think><answer>[1] > [2] > [3] > [4]</answer>"
    assert rearank_score(best, initial_list=initial, qrels=qrels) == pytest.approx(1.0)
    assert rearank_score(same, initial_list=initial, qrels=qrels) == pytest.approx(0.2)
    worse = rearank_score("<think>x</think><answer>[4] > [2] > [1] > [3]</answer>", initial_list=initial, qrels=qrels)
    assert worse < 0.2
    # answer not in [i] > [j] form: loses the second format point only
    assert rearank_score("<think>x</think><answer>3, 1, 2, 4</answer>", initial_list=initial, qrels=qrels) == (
        pytest.approx(0.9)
    )
    # no tags: parsed anyway (as at inference), no format points
    assert rearank_score("[3] > [1] > [2] > [4]", initial_list=initial, qrels=qrels) == pytest.approx(0.8)


def test_rearank_degenerate_case_initial_already_best():
    initial, qrels = ["a", "b"], {"a": 1}
    keep = rearank_score("<think>x</think><answer>[1] > [2]</answer>", initial_list=initial, qrels=qrels)
    swap = rearank_score("<think>x</think><answer>[2] > [1]</answer>", initial_list=initial, qrels=qrels)
    assert keep == pytest.approx(0.2)
    assert swap < 0.2
    nothing = rearank_score("<think>x</think><answer>[2] > [1]</answer>", initial_list=initial, qrels={"z": 1})
    assert nothing == pytest.approx(0.2)
    assert rearank_reward(
        ["p"],
        [keep_text := "<think>x</think><answer>[1] > [2]</answer>"],
        initial_list=[json.dumps(initial)],
        qrels=[json.dumps(qrels)],
    ) == [pytest.approx(rearank_score(keep_text, initial_list=initial, qrels=qrels))]


def test_rewards_import_without_torch_transformers_or_trl():
    code = (
        "import sys, reasonrank.train.rewards, reasonrank.train.data, reasonrank.train;"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_public_api_is_pinned():
    import reasonrank.train as train

    assert train.__all__ == [
        "FilterReport",
        "TrainingList",
        "answer_string",
        "default_config",
        "expand_initial_states",
        "grpo_example",
        "lists_from_collection",
        "load_config",
        "load_reasonrank_jsonl",
        "load_rl_parquet",
        "load_sft_json",
        "multiview_reward",
        "multiview_score",
        "rearank_example",
        "rearank_reward",
        "rearank_score",
        "self_consistency_filter",
        "sft_example",
        "synthesize",
        "train_grpo",
        "train_sft",
        "write_reasonrank_jsonl",
    ]
    for name in train.__all__:
        assert callable(getattr(train, name)), name
