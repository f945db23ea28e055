"""Show that the ReasonRank recipe learns: cold-start SFT, then GRPO with the multi-view reward, on CPU in minutes.

A synthetic ranking task: each query is "what is <rare word>?" over 5 passages of filler words; each passage
carries a different rare word and exactly one carries the query's. The teacher's reasoning names that passage
and its answer ranks it first. A tiny random Qwen2 model with a byte-level BPE tokenizer trained on the task
text (so a CPU step takes a fraction of a second; Qwen's 151k vocabulary would dominate the cost) gets a short
cold-start SFT, then GRPO with :func:`reasonrank.train.multiview_reward`. Held-out queries are reranked through
the normal inference path (``Reranker.from_pretrained(checkpoint, template="reasonrank")``, greedy) and
scored with the mean multi-view reward and nDCG@10.

The defaults are the recipe that docs/training.md reports (SFT 120 steps; GRPO 80 steps of 4 prompts x 8
rollouts, lr 1e-4 constant, beta 0, sampling temperature 0.7); the runs that did not improve are listed there.

    python benchmarks/train_recipe.py [--sft-steps 120] [--grpo-steps 80] [--temperature 0.7] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

from _common import FIXTURES, machine, table, write_json

from reasonrank import Passage, Reranker
from reasonrank.metrics import evaluate
from reasonrank.train import TrainingList, grpo_example, multiview_score, sft_example

FILLER = [
    "the", "river", "stone", "light", "green", "small", "old", "house", "road",
    "tree", "cold", "wind", "field", "bright", "quiet", "night", "water",
]


def rare_words(rng: random.Random, n: int) -> list[str]:
    syllables = ["zor", "blax", "quin", "tor", "vel", "mip", "kra", "dun", "sel", "fyr", "gom", "lek", "prax", "wim"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.sample(syllables, 2)))
    return sorted(words)


def make_task(rng: random.Random, words: list[str], n: int, prefix: str, size: int = 5) -> list[TrainingList]:
    out = []
    for q in range(n):
        chosen = rng.sample(words, size)
        target = rng.randrange(size)
        passages = []
        for i, word in enumerate(chosen):
            text = rng.sample(FILLER, 5)
            text.insert(rng.randrange(6), word)
            passages.append(Passage(" ".join(text), docid=f"{prefix}{q}d{i}"))
        order = [target] + [i for i in range(size) if i != target]
        out.append(
            TrainingList(
                f"{prefix}{q}", f"what is {chosen[target]}?", passages, dataset="synthetic",
                final_list=[passages[i].docid or "" for i in order],
                reasoning=f"the query asks about {chosen[target]}; passage [{target + 1}] mentions it.",
                relevant_docids=[passages[target].docid or ""],
            )
        )
    return out


def build_tokenizer(texts: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE without the usual split at spaces, so that the fixed instruction text (the same in every
    # prompt) merges into a few long tokens: short sequences keep CPU steps cheap. Lossless, like Qwen's.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([  # identifiers such as [3] stay tokens of their own
        pre_tokenizers.Split(Regex(r"\[\d+\]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = (FIXTURES / "qwen2.5_chat_template.jinja").read_text(encoding="utf-8")
    return tok


def save_base(tok, path: Path, seed: int) -> str:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    model = transformers.Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def evaluate_checkpoint(path: str, test: list[TrainingList]) -> dict[str, float]:
    reranker = Reranker.from_pretrained(path, template="reasonrank", max_tokens=64, progress=False)
    rankings = reranker.rerank_batch([x.query for x in test], [x.passages for x in test], qids=[x.qid for x in test])
    rewards, formatted, complete = [], 0, 0
    for item, ranking in zip(test, rankings):
        output = ranking.windows[0].output
        label = " > ".join(f"[{item.initial_list.index(d) + 1}]" for d in item.final_list or [])
        score = multiview_score(output, label=label, initial_list=item.initial_list,
                                relevant_docids=item.relevant_docids)
        rewards.append(score)
        formatted += score > -1
        complete += score > 0  # well-formed with every id once: the official reward gives 0 otherwise
    run = {x.qid: {d: float(-i) for i, d in enumerate(r.docids)} for x, r in zip(test, rankings)}
    qrels = {x.qid: dict.fromkeys(x.relevant_docids, 1) for x in test}
    return {
        "mean_reward": sum(rewards) / len(rewards),
        "nDCG@10": evaluate(run, qrels, ["nDCG@10"])["nDCG@10"],
        "format_ok": formatted / len(test),
        "complete": complete / len(test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-queries", type=int, default=400)
    parser.add_argument("--test-queries", type=int, default=50)
    parser.add_argument("--sft-steps", type=int, default=120)
    parser.add_argument("--grpo-steps", type=int, default=80)
    parser.add_argument("--passages", type=int, default=5, help="passages per query (default 5)")
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--grpo-lr", type=float, default=1e-4,
                        help="GRPO learning rate, constant (default 1e-4; 5e-4 made this tiny model worse or collapse)")
    parser.add_argument("--beta", type=float, default=0.0,
                        help="GRPO KL coefficient (default 0: no reference model to run)")
    parser.add_argument("--generations", type=int, default=8, help="GRPO rollouts per prompt (default 8)")
    parser.add_argument("--grpo-batch", type=int, default=32,
                        help="GRPO completions per step (default 32 = 4 prompts x 8 rollouts)")
    parser.add_argument("--temperature", type=float, default=0.7,
                        help="GRPO sampling temperature (default 0.7; at the official 1.0 over half of this tiny "
                             "model's rollouts ran to the length limit and GRPO did not help)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a busy machine 2 threads ran 15x slower than 1)")
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)

    from reasonrank.train import train_grpo, train_sft

    rng = random.Random(args.seed)
    words = rare_words(rng, 60)
    train = make_task(rng, words, args.train_queries, "t", args.passages)
    test = make_task(rng, words, args.test_queries, "h", args.passages)
    plain = [sft_example(x) for x in train]  # rendered with the built-in ChatML, only to train the tokenizer
    tok = build_tokenizer([r["prompt"] + r["completion"] for r in plain])
    sft_rows = [sft_example(x, tokenizer=tok) for x in train]
    grpo_rows = [grpo_example(x, tokenizer=tok) for x in train]
    prompt_tokens = sum(len(tok(r["prompt"])["input_ids"]) for r in sft_rows) / len(sft_rows)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = save_base(tok, Path(tmp) / "base", args.seed)
        results.append(("random init", 0, 0.0, evaluate_checkpoint(base, test)))
        logging.warning("%s", results[-1])
        start = time.perf_counter()
        sft = train_sft(base, sft_rows, output_dir=Path(tmp) / "sft", max_steps=args.sft_steps,
                        per_device_train_batch_size=8, learning_rate=args.sft_lr, lr_scheduler_type="cosine",
                        warmup_steps=0.1, logging_steps=10, seed=args.seed, gradient_checkpointing=False)
        results.append(("cold-start SFT", args.sft_steps, time.perf_counter() - start, evaluate_checkpoint(sft, test)))
        logging.warning("%s", results[-1])
        start = time.perf_counter()
        grpo = train_grpo(sft, grpo_rows, output_dir=Path(tmp) / "grpo", reward="multiview",
                          max_steps=args.grpo_steps, num_generations=args.generations,
                          per_device_train_batch_size=args.grpo_batch, max_completion_length=64,
                          learning_rate=args.grpo_lr, lr_scheduler_type="constant", beta=args.beta,
                          temperature=args.temperature, logging_steps=5, seed=args.seed,
                          gradient_checkpointing=False)  # TRL's default; it only slows a tiny model
        results.append(("SFT + GRPO", args.grpo_steps, time.perf_counter() - start, evaluate_checkpoint(grpo, test)))

    headers = ["checkpoint", "steps", "train s", "held-out mean reward", "held-out nDCG@10", "format ok",
               "complete list"]
    rows = [[name, steps, round(seconds, 1), round(m["mean_reward"], 3), round(m["nDCG@10"], 3),
             round(m["format_ok"], 2), round(m["complete"], 2)] for name, steps, seconds, m in results]
    print(f"{args.train_queries} training / {args.test_queries} held-out queries, {args.passages} passages each, "
          f"{len(tok)}-token vocabulary, {prompt_tokens:.0f} prompt tokens on average\n")
    print(table(headers, rows))
    write_json(args.json, {"machine": machine(), "args": vars(args), "vocab": len(tok), "prompt_tokens": prompt_tokens,
                           "results": [dict(zip(headers, r)) for r in rows]})


if __name__ == "__main__":
    sys.exit(main())
