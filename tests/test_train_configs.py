"""The shipped recipe configs hold the official hyperparameters (model-reference §3.2, §3.4) and load as TRL configs."""

from __future__ import annotations

import pytest

from reasonrank import InvalidInputError
from reasonrank.train.trainers import available_configs, default_config, load_config


def test_shipped_configs_and_inheritance():
    assert available_configs() == ["grpo-32b-lora", "grpo-7b-full", "grpo-rearank-7b", "sft-32b-lora", "sft-7b-full"]
    sft7 = default_config("sft-7b-full")
    assert sft7["args"]["learning_rate"] == 5e-6 and sft7["args"]["num_train_epochs"] == 5
    assert sft7["args"]["gradient_accumulation_steps"] == 8 and sft7["args"]["max_length"] == 23552
    sft32 = default_config("sft-32b-lora")
    assert sft32["model"] == "Qwen/Qwen2.5-32B-Instruct"
    assert sft32["lora"] == {"r": 32, "lora_alpha": 32, "target_modules": "all-linear"}
    assert sft32["args"]["learning_rate"] == 1e-4 and sft32["args"]["num_train_epochs"] == 7
    assert sft32["args"]["lr_scheduler_type"] == "cosine"  # inherited from sft-7b-full
    grpo = default_config("grpo-7b-full")
    assert grpo["reward"] == "multiview"
    assert {k: grpo["args"][k] for k in ("learning_rate", "num_generations", "generation_batch_size", "beta")} == {
        "learning_rate": 1e-6,
        "num_generations": 8,
        "generation_batch_size": 128,
        "beta": 0.001,
    }
    assert default_config("grpo-32b-lora")["args"]["learning_rate"] == 1e-5
    assert default_config("grpo-rearank-7b")["reward"] == "rearank"


def test_config_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="neither a file nor a shipped config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(InvalidInputError, match="YAML mapping"):
        load_config(bad)


@pytest.mark.parametrize("name", ["sft-7b-full", "grpo-7b-full"])
def test_shipped_args_are_valid_trl_fields(name):
    trl = pytest.importorskip("trl")
    args = dict(default_config(name)["args"])
    args.update(bf16=False, use_cpu=True)
    if name.startswith("grpo"):
        args["use_vllm"] = False  # vLLM is not installed here
    cls = trl.SFTConfig if name.startswith("sft") else trl.GRPOConfig
    config = cls(output_dir="unused", **args)
    assert config.learning_rate == args["learning_rate"]
