"""RankGPT's zero-shot permutation prompt, for any chat model (model-reference §6), byte for byte.

``rankgpt-classic`` is the original prompt of ``sunnweiwei/RankGPT`` @ ``0d62bc3`` (``rank_gpt.py``:
``get_prefix_prompt``, ``create_permutation_instruction``, ``get_post_prompt``), the one behind the published
GPT-3.5/GPT-4 numbers: system "You are RankGPT, ...", the instruction, ``Okay, please provide the passages.``,
then per passage a user turn with its first 300 *words* and an assistant ``Received passage [i].`` turn, then
the post-prompt (its "Only response the ranking results" is verbatim).

``rankgpt-rearank`` is the copy in REARANK's code (``lezhang7/Rearank`` @ ``abb4bd0``,
``create_permutation_instruction``): the same strings, but each passage is cut to 300 *characters* after
whitespace normalisation and the "Received" turns are commented out. REARANK uses it for every model other
than REARANK-7B with thinking on: its "w/o reasoning" ablation and the Qwen2.5 baselines of its paper. Its
outputs are read with REARANK's ``clean_response`` (parser style ``rearank``).

Neither applies ``ftfy`` or ``[n] -> (n)`` rewriting; the query is used raw. Outputs of ``rankgpt-classic`` are
read as the original does: every run of digits in the whole response is an identifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._errors import InvalidInputError
from .._types import PassageLike
from ._base import Message, Template, register_template
from ._chat import apply_chat_template
from ._rearank import official_hit_content, refuse_token_limit

__all__ = ["POST_PROMPT", "PREFIX", "SYSTEM_PROMPT", "RankGPTTemplate"]

SYSTEM_PROMPT = (
    "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."
)
PREFIX = (
    "I will provide you with {num} passages, each indicated by number identifier []. \n"
    "Rank the passages based on their relevance to query: {query}."
)
OKAY = "Okay, please provide the passages."
RECEIVED = "Received passage [{rank}]."
POST_PROMPT = (
    "Search Query: {query}. \nRank the {num} passages above based on their relevance to the search query. "
    "The passages should be listed in descending order using identifiers. The most relevant passages should be "
    "listed first. The output format should be [] > [], e.g., [1] > [2]. Only response the ranking results, "
    "do not say any word or explain."
)


class RankGPTTemplate(Template):
    """The RankGPT multi-turn prompt; passages cut to ``max_words`` words or to ``max_chars`` characters.

    ``normalise_untitled`` picks the loader a passage without title is taken through (see
    :func:`~reasonrank.prompts._rearank.official_hit_content`): RankGPT's ``run_retriever`` (True) or REARANK's
    BRIGHT loader (False).

    Examples:
        >>> from reasonrank.prompts import get_template
        >>> msgs = get_template("rankgpt-classic").build_messages("q", ["one  two\\nthree", "four"])
        >>> [(m["role"], m["content"]) for m in msgs[2:6]]  # doctest: +NORMALIZE_WHITESPACE
        [('assistant', 'Okay, please provide the passages.'), ('user', '[1] one two three'),
         ('assistant', 'Received passage [1].'), ('user', '[2] four')]
    """

    name: ClassVar[str] = ""
    parser_style: ClassVar[str] = "rankgpt"
    default_max_passage_tokens: ClassVar[int | None] = None
    truncates_by_tokens: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        max_words: int | None = 300,
        max_chars: int | None = None,
        received_turns: bool = True,
        parser_style: str = "rankgpt",
        normalise_untitled: bool = True,
    ) -> None:
        if (max_words is None) == (max_chars is None):
            raise InvalidInputError("give exactly one of max_words (original RankGPT) and max_chars (REARANK's copy)")
        for label, value in (("max_words", max_words), ("max_chars", max_chars)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{label} must be an int >= 1, got {value!r}")
        self.name = name  # type: ignore[misc]
        self.max_words = max_words
        self.max_chars = max_chars
        self.received_turns = received_turns
        self.parser_style = parser_style  # type: ignore[misc]
        self.normalise_untitled = normalise_untitled

    def passage_content(
        self, passage: PassageLike, *, tokenizer: Any = None, max_passage_tokens: int | None = None
    ) -> str:
        cut = f"{self.max_words} words" if self.max_words is not None else f"{self.max_chars} characters"
        refuse_token_limit(self, max_passage_tokens, cut)
        content = official_hit_content(passage, normalise_untitled=self.normalise_untitled)
        content = content.replace("Title: Content: ", "").strip()
        if self.max_words is not None:  # original: ' '.join(content.split()[:300])
            return " ".join(content.split()[: self.max_words])
        return " ".join(content.split())[: self.max_chars]  # REARANK's copy: f"[{rank}] {content[:300]}"

    def messages_from_contents(self, query: str, contents: Sequence[str]) -> list[Message]:
        num = len(contents)
        messages: list[Message] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": PREFIX.format(num=num, query=query)},
            {"role": "assistant", "content": OKAY},
        ]
        for rank, content in enumerate(contents, start=1):
            messages.append({"role": "user", "content": f"[{rank}] {content}"})
            if self.received_turns:
                messages.append({"role": "assistant", "content": RECEIVED.format(rank=rank)})
        messages.append({"role": "user", "content": POST_PROMPT.format(query=query, num=num)})
        return messages

    def render_messages(self, messages: Sequence[Mapping[str, str]], tokenizer: Any = None) -> str:
        """The model's chat template with the generation prompt; no ``fix_text`` (the official code has none)."""
        return apply_chat_template(messages, tokenizer)


RANKGPT_CLASSIC = register_template(RankGPTTemplate("rankgpt-classic"))
RANKGPT_REARANK = register_template(
    RankGPTTemplate(
        "rankgpt-rearank",
        max_words=None,
        max_chars=300,
        received_turns=False,
        parser_style="rearank",
        normalise_untitled=False,  # as the rearank template: BRIGHT contents are taken as loaded
    )
)
