"""ReasonRank's prompt modes, byte for byte as in the official code (model-reference §1.2-§1.5).

``reasonrank`` = official ``rank_GPT_reasoning`` (ReasonRank-7B/32B), ``reasonrank-qwen3`` = ``rank_GPT_qwen3``
(ReasonRank-8B), ``rankgpt`` = ``rank_GPT`` (the non-reasoning RankLLM prompt, any instruct model).
The strings below are interfaces the released weights were trained on: do not edit them, typos included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from .._types import PassageLike, SamplingParams
from ._base import (
    Message,
    Template,
    ensure_passage,
    fix_text,
    passage_text_with_title,
    register_template,
    replace_number,
    truncate_by_tokens,
)

__all__ = [
    "PREFIX",
    "SUFFIX_QWEN3",
    "SUFFIX_RANK_GPT",
    "SUFFIX_REASONING",
    "SYSTEM_PROMPT",
    "SYSTEM_PROMPT_REASONING",
    "ReasonRankTemplate",
]

# listwise_prompt_r1.toml `system_prompt` (rank_GPT, rank_GPT_qwen3)
SYSTEM_PROMPT = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query."
)
# listwise_prompt_r1.toml `system_prompt_reasoning` (rank_GPT_reasoning). "you first thinks" is what the
# model was trained on: keep the grammar error.
SYSTEM_PROMPT_REASONING = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query. "
    "Given a query and a passage list, you first thinks about the reasoning process in the mind and then "
    "provides the answer (i.e., the reranked passage list). The reasoning process and answer are enclosed "
    "within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think> <answer> answer here </answer>."
)
# utils.add_prefix_prompt: ends with one "\n"; create_prompt adds another, hence the blank line before [1].
PREFIX = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}.\n"
)
# utils.add_post_prompt, one per mode; none ends with a newline.
SUFFIX_REASONING = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
    "The format of the answer should be [] > [], e.g., [2] > [1]."
)
SUFFIX_RANK_GPT = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
    "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, do not say "
    "any word or explain."
)
SUFFIX_QWEN3 = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
    "The final ranked list should be enclosed within <answer> </answer> tags, i.e., <answer> ranked list here "
    "</answer>. The format of ranked list should be [] > [], e.g., [2] > [1]. Only respond with the ranking "
    "results, do not say any word or explain."
)


class ReasonRankTemplate(Template):
    """Official ``RankListwiseOSLLM.create_prompt`` for one prompt mode.

    Examples:
        >>> from reasonrank.prompts import get_template
        >>> t = get_template("reasonrank")
        >>> msgs = t.build_messages("what is [1]?", ["alpha", {"title": "T", "text": " beta [2] "}])
        >>> print(msgs[1]["content"][:80])
        I will provide you with 2 passages, each indicated by a numerical identifier [].
        >>> msgs[1]["content"].splitlines()[1:4]
        ['', '[1] alpha', '[2] Title: T Content:  beta (2)']
    """

    name: ClassVar[str] = ""
    default_max_passage_tokens: ClassVar[int | None] = 512  # DOC_MAXLEN of BRIGHT/R2MED (100 for BEIR/DL)

    def __init__(self, name: str, system: str, suffix: str, parser_style: str) -> None:
        self.name = name  # type: ignore[misc]
        self.system = system
        self.suffix = suffix
        self.parser_style = parser_style  # type: ignore[misc]

    def passage_content(
        self, passage: PassageLike, *, tokenizer: Any = None, max_passage_tokens: int | None = None
    ) -> str:
        # utils.convert_doc_to_prompt_content(..., truncate_by_word=False): title prefix, strip, fix_text,
        # token truncation, replace_number -- in this order.
        content = passage_text_with_title(ensure_passage(passage)).strip()
        content = fix_text(content)
        if max_passage_tokens is not None:
            content = truncate_by_tokens(content, tokenizer, max_passage_tokens)
        return replace_number(content)

    def messages_from_contents(self, query: str, contents: Sequence[str]) -> list[Message]:
        query = replace_number(query).strip()
        num = len(contents)
        user = PREFIX.format(num=num, query=query) + "\n"
        for rank, content in enumerate(contents, start=1):
            user += f"[{rank}] {content}\n"
        user += self.suffix.format(num=num, query=query)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def sampling_for_window(self, num: int, sampling: SamplingParams, tokenizer: Any = None) -> SamplingParams:
        if self.parser_style != "rankgpt":
            return sampling
        # Official rank_GPT mode decodes exactly as many tokens as "[1] > [2] > ... > [num]" takes:
        # max_tokens = min_tokens = len(tokenizer.encode(...)).
        ideal = " > ".join(f"[{i + 1}]" for i in range(num))
        if tokenizer is not None:
            n_tokens = len(tokenizer.encode(ideal))
        else:  # no tokenizer: a safe overestimate (about 4 tokens per "[12] > ")
            n_tokens = 5 * num
        return replace(sampling, max_tokens=n_tokens, min_tokens=n_tokens)


REASONRANK = register_template(
    ReasonRankTemplate("reasonrank", SYSTEM_PROMPT_REASONING, SUFFIX_REASONING, "reasonrank"),
    "rank_GPT_reasoning",
)
REASONRANK_QWEN3 = register_template(
    ReasonRankTemplate("reasonrank-qwen3", SYSTEM_PROMPT, SUFFIX_QWEN3, "reasonrank"), "rank_GPT_qwen3"
)
RANK_GPT = register_template(ReasonRankTemplate("rankgpt", SYSTEM_PROMPT, SUFFIX_RANK_GPT, "rankgpt"), "rank_GPT")
