"""REARANK-7B's prompt and output parser, byte for byte as in the official code (model-reference §5.1).

Official source: ``lezhang7/Rearank`` @ ``abb4bd0``, ``rank_gpt.py`` (``create_permutation_instruction_rearank``,
``clean_response``, ``receive_permutation``) and ``agent.py`` (``QwenClient.batch_chat``). The strings below are
the interface REARANK-7B was trained on: do not edit them, missing spaces and grammar errors included.

The prompt is a multi-turn conversation: system, instruction, ``Okay, please provide the passages.``, one
user/assistant pair per passage, then the final request. It is rendered with the model's chat template and
``add_generation_prompt=True``; unlike ReasonRank, no ``ftfy.fix_text``, no ``[n] -> (n)`` rewriting and no
query stripping happen anywhere (the query is used raw).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._errors import InvalidInputError
from .._types import PassageLike, Repair
from ..parsing import Extraction, register_parser_style
from ._base import Message, Template, ensure_passage, register_template
from ._chat import apply_chat_template

__all__ = [
    "INSTRUCTION",
    "OKAY",
    "RECEIVED",
    "SYSTEM_PROMPT",
    "RearankTemplate",
    "official_hit_content",
    "refuse_token_limit",
]

SYSTEM_PROMPT = (
    "You are DeepRerank, an intelligent assistant that can rank passages based on their relevancy to the "
    "search query. You first thinks about the reasoning process in the mind and then provides the user with "
    "the answer."
)
# Three adjacent f-string literals in the official code: no space after "search query." (twice), and the
# query is followed by ". \n".
INSTRUCTION = (
    "I will provide you with passages, each indicated by number identifier []. Rank the passages based on their "
    "relevance to the search query."
    "Search Query: {query}. \nRank the {num} passages above based on their relevance to the search query."
    "The passages should be listed in descending order using identifiers. The most relevant passages should be "
    "listed first. The output format should be <answer> [] > [] </answer>, e.g., <answer> [1] > [2] </answer>."
)
OKAY = "Okay, please provide the passages."
RECEIVED = "Received passage [{rank}]."
# An official triple-quoted f-string: its continuation lines keep the source's 12-space indentation, and the
# blank line is really empty.
_INDENT = " " * 12
FINAL = (
    'Please rank these passages according to their relevance to the search query: "{query}"\n'
    f"{_INDENT}Follow these steps exactly:\n"
    f"{_INDENT}1. First, within <think> tags, analyze EACH passage individually:\n"
    f"{_INDENT}- Evaluate how well it addresses the query\n"
    f"{_INDENT}- Note specific relevant information or keywords\n"
    "\n"
    f"{_INDENT}2. Then, within <answer> tags, provide ONLY the final ranking in descending order of relevance "
    "using the format: [X] > [Y] > [Z]"
)


def official_hit_content(passage: PassageLike, *, normalise_untitled: bool = False) -> str:
    """A passage's ``hit['content']`` as the official loaders build it, before the prompt's own processing.

    A passage with a title (even an empty one: the official test is ``'title' in doc``) is a BEIR document:
    ``run_retriever`` builds ``'Title: ' + title + ' ' + 'Content: ' + text`` and whitespace-normalises it;
    the prompt's ``'Title: Content: '`` replace later drops an empty title's prefix. A passage without one is
    taken as is, as REARANK's ``get_hits_from_run_bright`` does with BRIGHT's ``contents``, or
    whitespace-normalised with ``normalise_untitled=True``, as ``run_retriever`` does with MS MARCO/BEIR
    ``contents`` (RankGPT's only loader). The two differ only for a text holding ``Title:`` and
    ``Content:`` separated by whitespace other than one space, which the prompt's replace then misses.

    Examples:
        >>> official_hit_content({"title": "T\\n1", "text": " a  b "})
        'Title: T 1 Content: a b'
    """
    p = ensure_passage(passage)
    if p.title is not None:
        return " ".join(("Title: " + p.title + " " + "Content: " + p.text).split())
    return " ".join(p.text.split()) if normalise_untitled else p.text


def refuse_token_limit(template: Template, max_passage_tokens: int | None, cut: str) -> None:
    """Templates that cut passages by characters or words take no token limit: say so instead of ignoring it."""
    if max_passage_tokens is not None:
        raise InvalidInputError(
            f"the {template.name!r} template cuts each passage to {cut} itself, as the official code does, so "
            f"max_passage_tokens={max_passage_tokens!r} does not apply: leave it None (to change the cut, "
            "register a template with another limit)"
        )


class RearankTemplate(Template):
    """Official ``create_permutation_instruction_rearank`` (REARANK-7B, ``le723z/Rearank-7B``).

    Each passage becomes ``' '.join(content.replace('Title: Content: ', '').strip().split())[:max_chars]``:
    the 400-character cut (not tokens) comes *after* whitespace normalisation. ``max_passage_tokens`` is
    refused; ``max_chars`` (default 400, as trained) sets the cut.

    Examples:
        >>> from reasonrank.prompts import get_template
        >>> msgs = get_template("rearank").build_messages("q", ["alpha\\n\\nbeta", {"title": "T", "text": "body"}])
        >>> [m["role"] for m in msgs]
        ['system', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user']
        >>> msgs[3]["content"], msgs[5]["content"], msgs[6]["content"]
        ('[1] alpha beta', '[2] Title: T Content: body', 'Received passage [2].')
    """

    name: ClassVar[str] = ""
    parser_style: ClassVar[str] = "rearank"
    default_max_passage_tokens: ClassVar[int | None] = None
    truncates_by_tokens: ClassVar[bool] = False

    def __init__(self, name: str = "rearank", *, max_chars: int = 400) -> None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise InvalidInputError(f"max_chars must be an int >= 1, got {max_chars!r}")
        self.name = name  # type: ignore[misc]
        self.max_chars = max_chars

    def passage_content(
        self, passage: PassageLike, *, tokenizer: Any = None, max_passage_tokens: int | None = None
    ) -> str:
        refuse_token_limit(self, max_passage_tokens, f"{self.max_chars} characters")
        content = official_hit_content(passage).replace("Title: Content: ", "").strip()
        return " ".join(content.split())[: self.max_chars]

    def messages_from_contents(self, query: str, contents: Sequence[str]) -> list[Message]:
        messages: list[Message] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": INSTRUCTION.format(query=query, num=len(contents))},
            {"role": "assistant", "content": OKAY},
        ]
        for rank, content in enumerate(contents, start=1):
            messages.append({"role": "user", "content": f"[{rank}] {content}"})
            messages.append({"role": "assistant", "content": RECEIVED.format(rank=rank)})
        messages.append({"role": "user", "content": FINAL.format(query=query)})
        return messages

    def render_messages(self, messages: Sequence[Mapping[str, str]], tokenizer: Any = None) -> str:
        """The chat template with the generation prompt, nothing else (``QwenClient.batch_chat``: no fix_text)."""
        return apply_chat_template(messages, tokenizer)


# ----------------------------------------------------------------------------------------------- parsing


def _answer_span(text: str) -> tuple[int, int] | None:
    """Group 1 of ``re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)``, in linear time (the regex is
    quadratic on text full of ``<answer>``): if no ``</answer>`` follows the first ``<answer>``, none follows
    a later one either."""
    start = text.find("<answer>")
    if start < 0:
        return None
    start += len("<answer>")
    end = text.find("</answer>", start)
    return None if end < 0 else (start, end)


def _reasoning(text: str) -> str | None:
    start = text.find("<think>")
    if start < 0:  # the chat template opened <think> in the prompt: everything before </think> is reasoning
        end = text.find("</think>")
        return text[:end].strip() if end >= 0 else None
    start += len("<think>")
    end = text.find("</think>", start)
    if end < 0:
        end = text.find("<answer>", start)
    return text[start : end if end >= 0 else len(text)].strip()


def extract_rearank(text: str) -> Extraction:
    """Official REARANK ``clean_response`` (case-sensitive tags), before identifiers are read.

    1. If ``<answer>`` occurs: the first ``<answer>(.*?)</answer>`` group, stripped; the whole text stripped
       when no such pair exists. 2. If ``<think>`` still occurs: only what follows the last ``</think>`` (all
       of it when there is none). Then ``receive_permutation`` skips each number ``int()`` rejects (``²``)
       and keeps the others. Without an answer block, ``answer`` shows only what follows the last
       ``<answer>`` (or ``</think>``; ``None`` if neither occurs) while identifiers are read as official.

    Examples:
        >>> extract_rearank("<think>[1] is weak</think>\\n<answer> [2] > [1] </answer>").answer
        '[2] > [1]'
        >>> e = extract_rearank("<think>[3] looks best</think> [3] > [1]")
        >>> e.answer, e.ids_text, e.repair.kind
        ('[3] > [1]', ' [3] > [1]', 'no_answer')
    """
    response = text
    repair: Repair | None = None
    shown: str | None = None
    if "<answer>" in response:
        span = _answer_span(response)
        if span:
            response = response[span[0] : span[1]].strip()
        else:
            response = response.strip()
            shown = text.split("<answer>")[-1].split("</answer>")[0].strip()
            repair = Repair(
                "answer_fallback",
                detail="<answer> without </answer>: identifiers read from the whole output (after the last </think>)",
            )
    else:
        repair = Repair(
            "no_answer", detail="no <answer> (output cut off?): identifiers read after the last </think>, if any"
        )
        if "</think>" in text:
            shown = text.split("</think>")[-1].strip()
    if "<think>" in response:
        response = response.split("</think>")[-1]
    if repair is None:
        return Extraction(response, _reasoning(text), None, skip_invalid_numbers=True)
    return Extraction(shown or None, _reasoning(text), repair, skip_invalid_numbers=True, ids_from=response)


register_parser_style("rearank", extract_rearank)

REARANK = register_template(RearankTemplate("rearank"))
