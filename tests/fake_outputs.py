"""A deterministic stand-in model: its output is a function of the exact prompt bytes.

Used on both sides of the fidelity tests: the official ReasonRank pipeline was run once with this function
as its model (see tests/fixtures/README.md) and our pipeline must reproduce the recorded windows, prompt
hashes and final orders. Any byte of difference in a prompt changes every later output, so the comparison
checks prompts, parsing, window bookkeeping and positional scores together.
"""

from __future__ import annotations

import hashlib
import random


def prompt_sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def fake_output(prompt: str, num: int, *, tags: bool = True) -> str:
    """One of many output shapes (clean, missing, duplicate, out of range, untagged, truncated, ...)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    ids = list(range(1, num + 1))
    rng.shuffle(ids)
    kind = digest[0] % 10
    if kind == 0 and num > 2:  # some ids missing
        ids = ids[: max(1, num - rng.randint(1, num - 1))]
    elif kind == 1:  # duplicates
        ids = ids + ids[: rng.randint(1, num)]
    elif kind == 2:  # out of range (0 and beyond num)
        ids.insert(rng.randint(0, len(ids)), num + rng.randint(1, 5))
        ids.insert(rng.randint(0, len(ids)), 0)
    ranked = " > ".join(f"[{i}]" for i in ids)
    if not tags:
        return ranked if kind != 3 else f"The ranking is {ranked}, for 2 reasons."
    reasoning = f"Passage [{ids[0]}] looks best; 2024 is a year."
    if kind == 3:  # no answer block: digits scraped from reasoning
        return f"<think>{reasoning} {ranked}"
    if kind == 4:  # unclosed answer
        return f"<think>{reasoning}</think>\n<answer>{ranked}"
    if kind == 5:  # upper-case tags
        return f"<THINK>{reasoning}</THINK> <ANSWER>{ranked}</ANSWER>"
    if kind == 6:  # a digit that isdigit() accepts and int() rejects
        return f"<think>{reasoning}</think><answer>{ranked} > [²]</answer>"
    if kind == 7:  # answer tag inside the reasoning, then the real answer
        return f"<think>I will write <answer> later. {reasoning}</think>\n\n<answer> {ranked} </answer>"
    return f"<think>{reasoning}</think> <answer>{ranked}</answer>"
