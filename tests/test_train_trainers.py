"""Real training on CPU: a tiny random Qwen2 model, real TRL, real reward, checkpoints reloaded into Reranker."""

from __future__ import annotations

import json

import pytest

from conftest import tiny_qwen2
from reasonrank import Passage, Reranker
from reasonrank.train import TrainingList, grpo_example, multiview_reward, sft_example

pytest.importorskip("trl")
pytestmark = pytest.mark.slow

TEACHER = "<think>The second passage names the moon.</think>\n<answer>[2] > [1] > [3]</answer>"


def items() -> list[TrainingList]:
    out = []
    for i, (query, rel) in enumerate((("why tides", "moon"), ("why seasons", "tilt"))):
        passages = [
            Passage("the sun rises", docid=f"q{i}a"),
            Passage(f"the {rel} matters", docid=f"q{i}b"),
            Passage("rocks are hard", docid=f"q{i}c"),
        ]
        out.append(
            TrainingList(
                f"q{i}",
                query,
                passages,
                dataset="toy",
                final_list=[f"q{i}b", f"q{i}a", f"q{i}c"],
                reasoning="The second passage names it.",
                relevant_docids=[f"q{i}b"],
            )
        )
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a loaded 2-core machine, two threads made these steps an order of magnitude slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, qwen25_tokenizer):
    path = tmp_path_factory.mktemp("base")
    tiny_qwen2(qwen25_tokenizer).save_pretrained(path)
    qwen25_tokenizer.save_pretrained(path)
    return str(path)


def weights(path: str):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path).model.layers[0].self_attn.q_proj.weight.detach()


def rerank_with(path: str) -> list[str]:
    reranker = Reranker.from_pretrained(path, template="reasonrank", max_tokens=16, progress=False)
    ranking = reranker.rerank("why tides", ["the sun rises", "the moon matters", "rocks are hard"])
    return sorted(ranking.docids)


@pytest.mark.parametrize("lora", [None, {"r": 4, "lora_alpha": 8}], ids=["full", "lora"])
def test_sft_two_steps_and_reload(tmp_path, base_model, qwen25_tokenizer, lora):
    from reasonrank.train import train_sft

    rows = [sft_example(x, tokenizer=qwen25_tokenizer) for x in items()]
    out = train_sft(
        base_model,
        rows,
        output_dir=tmp_path / "sft",
        lora=lora,
        max_steps=2,
        per_device_train_batch_size=1,
        learning_rate=1e-2,
        logging_steps=1,
    )
    assert not (weights(out) == weights(base_model)).all()  # the weights moved (LoRA merged into them)
    if lora:
        assert (tmp_path / "sft" / "adapter" / "adapter_config.json").is_file()
    assert rerank_with(out) == ["0", "1", "2"]


@pytest.mark.parametrize("lora", [None, {"r": 4, "lora_alpha": 8}], ids=["full", "lora"])
def test_grpo_two_steps_with_the_real_reward_and_reload(tmp_path, base_model, qwen25_tokenizer, lora):
    from reasonrank.train import train_grpo

    rows = [grpo_example(x, tokenizer=qwen25_tokenizer) for x in items()]
    seen: list[dict] = []

    def reward(prompts, completions, **columns):
        scores = multiview_reward(prompts, completions, **columns)
        seen.append({"prompts": prompts, "completions": completions, "scores": scores, **columns})
        return scores

    out = train_grpo(
        base_model,
        rows,
        output_dir=tmp_path / "grpo",
        reward=reward,
        lora=lora,
        max_steps=2,
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
    )
    assert len(seen) >= 2
    batch = seen[0]
    row = next(r for r in rows if r["prompt"] == batch["prompts"][0])
    assert batch["label"][0] == row["label"] == "[2] > [1] > [3]"
    assert json.loads(batch["initial_list"][0]) == json.loads(row["initial_list"])
    assert json.loads(batch["relevant_docids"][0]) == json.loads(row["relevant_docids"])
    assert "trainer_state" in batch
    # The CPU trap the docs warn about: a random model never writes the format, so every reward is -1.
    assert all(s == -1.0 for b in seen for s in b["scores"])
    assert rerank_with(out) == ["0", "1", "2"]
    # the teacher's own answer would have scored the maximum
    assert multiview_reward(
        batch["prompts"][:1],
        [TEACHER],
        label=batch["label"][:1],
        initial_list=batch["initial_list"][:1],
        relevant_docids=batch["relevant_docids"][:1],
    ) == [pytest.approx(1.3)]


def test_cli_sft_from_a_config_extending_the_shipped_recipe(tmp_path, base_model, capsys):
    """`reasonrank train sft --config`: shipped 7B recipe (bf16 on; the CPU trap is handled), filtered jsonl data."""
    from reasonrank.cli import main
    from reasonrank.train import write_reasonrank_jsonl

    data = tmp_path / "data" / "training_data_all.jsonl"
    write_reasonrank_jsonl(items(), data)
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"base: sft-7b-full\nmodel: {base_model}\noutput_dir: {tmp_path / 'out'}\n"
        f"data:\n  format: reasonrank_jsonl\n  path: {data}\n  alpha: 0.4\n  inclusive: false\n"
    )
    argv = [
        "train",
        "sft",
        "--config",
        str(config),
        "--set",
        "max_steps=1",
        "--set",
        "gradient_accumulation_steps=1",
        "--set",
        "save_strategy=no",
        "--set",
        "learning_rate=0.01",
        "--set",
        "warmup_steps=0",
    ]
    # (the recipe's 10% warmup would make the only step's learning rate 0)
    assert main(argv) == 0
    # the command's last stdout line is the checkpoint (the Trainer prints its metrics before it)
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "out")
    assert not (weights(str(tmp_path / "out")) == weights(base_model)).all()
    assert rerank_with(str(tmp_path / "out")) == ["0", "1", "2"]
