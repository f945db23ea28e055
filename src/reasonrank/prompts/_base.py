"""The template contract and the registry of named templates."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._errors import InvalidInputError, UnknownNameError
from .._types import Passage, PassageLike, SamplingParams, as_passage, as_passages
from ._chat import apply_chat_template

__all__ = [
    "Template",
    "available_templates",
    "fix_text",
    "get_template",
    "register_template",
    "replace_number",
    "truncate_by_tokens",
]

Message = dict[str, str]

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def replace_number(s: str) -> str:
    """Official ``replace_number``: ``[12]`` becomes ``(12)`` so passages cannot forge identifiers.

    Examples:
        >>> replace_number("see [3] and [a] and [ 1]")
        'see (3) and [a] and [ 1]'
    """
    return _BRACKETED_NUMBER.sub(r"(\1)", s)


def fix_text(text: str) -> str:
    """``ftfy.fix_text`` with its default configuration, imported on first use (keeps import cheap)."""
    import ftfy

    return ftfy.fix_text(text)


def truncate_by_tokens(text: str, tokenizer: Any, max_tokens: int) -> str:
    """Official truncation: ``convert_tokens_to_string(tokenize(text)[:max_tokens])``.

    The round trip runs even when nothing is cut, as in the official code (for byte-level BPE tokenizers
    such as Qwen's it is then lossless).
    """
    if tokenizer is None:
        raise InvalidInputError(
            "truncating passages by tokens needs the model's tokenizer: pass tokenizer=..., or "
            "max_passage_tokens=None to keep passages whole"
        )
    return tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens])


class Template(ABC):
    """A prompt format a model was trained on, plus the parser style and settings that go with it.

    Subclasses implement :meth:`passage_content` (one passage's text as it appears in the prompt) and
    :meth:`messages_from_contents` (the chat messages of one window). Both are pure, so callers may cache
    passage contents across windows: a passage's prompt text does not depend on the window it is in.
    """

    name: ClassVar[str]
    #: parser style for :func:`reasonrank.parsing.parse_ranking`
    parser_style: ClassVar[str] = "reasonrank"
    #: passage limit used when the caller gives none (tokens unless the template says otherwise)
    default_max_passage_tokens: ClassVar[int | None] = None
    #: whether passage truncation needs the model's tokenizer
    truncates_by_tokens: ClassVar[bool] = True

    @abstractmethod
    def passage_content(
        self, passage: PassageLike, *, tokenizer: Any = None, max_passage_tokens: int | None = None
    ) -> str:
        """The text of one passage as it appears after its identifier in the prompt."""

    @abstractmethod
    def messages_from_contents(self, query: str, contents: Sequence[str]) -> list[Message]:
        """The chat messages for one window, from already prepared passage contents."""

    def build_messages(
        self,
        query: str,
        passages: Sequence[PassageLike],
        *,
        tokenizer: Any = None,
        max_passage_tokens: int | None = None,
    ) -> list[Message]:
        """The chat messages (before the chat template) for one window, exactly as the official code."""
        _check_query(query)
        contents = [
            self.passage_content(p, tokenizer=tokenizer, max_passage_tokens=max_passage_tokens)
            for p in as_passages(passages)
        ]
        return self.messages_from_contents(query, contents)

    def render_messages(self, messages: Sequence[Mapping[str, str]], tokenizer: Any = None) -> str:
        """Chat template with generation prompt, then ``ftfy.fix_text`` over the whole string (official)."""
        return fix_text(apply_chat_template(messages, tokenizer))

    def render(
        self,
        query: str,
        passages: Sequence[PassageLike],
        tokenizer: Any = None,
        *,
        max_passage_tokens: int | None = None,
    ) -> str:
        """The final prompt string the model sees (``tokenizer=None``: built-in Qwen2.5 ChatML)."""
        messages = self.build_messages(query, passages, tokenizer=tokenizer, max_passage_tokens=max_passage_tokens)
        return self.render_messages(messages, tokenizer)

    def sampling_for_window(self, num: int, sampling: SamplingParams, tokenizer: Any = None) -> SamplingParams:
        """Per-window decoding settings (most templates use ``sampling`` as is)."""
        return sampling

    def __repr__(self) -> str:
        return f"<Template {self.name!r}>"


def _check_query(query: Any) -> None:
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise InvalidInputError("query is empty; pass the search query text to rank passages against")


_TEMPLATES: dict[str, Template] = {}
_ALIASES: dict[str, str] = {}


def register_template(template: Template, *aliases: str) -> Template:
    """Register a template instance under its ``name`` (and optional aliases)."""
    _TEMPLATES[template.name] = template
    for alias in aliases:
        _ALIASES[alias] = template.name
    return template


def available_templates() -> list[str]:
    return sorted(_TEMPLATES)


def get_template(name: str | Template) -> Template:
    """Look a template up by name (official prompt-mode names such as ``rank_GPT_reasoning`` work too).

    Examples:
        >>> get_template("rank_GPT_reasoning").name
        'reasonrank'
    """
    if isinstance(name, Template):
        return name
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    try:
        return _TEMPLATES[key]
    except (KeyError, TypeError):
        raise UnknownNameError("template", name, available_templates()) from None


def passage_text_with_title(passage: Passage) -> str:
    """Official: ``"Title: " + title + " " + "Content: " + body`` when the title is truthy."""
    if passage.title:
        return "Title: " + passage.title + " " + "Content: " + passage.text
    return passage.text


def ensure_passage(passage: PassageLike) -> Passage:
    return passage if isinstance(passage, Passage) else as_passage(passage)
