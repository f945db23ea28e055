"""Chat-template rendering: the tokenizer's own template when there is one, else Qwen2.5's ChatML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidInputError

__all__ = ["QWEN25_DEFAULT_SYSTEM", "apply_chat_template", "qwen25_chatml"]

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def qwen25_chatml(messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
    """Render ``messages`` exactly as Qwen2.5-Instruct's chat template does (without tools).

    ReasonRank-7B/32B and REARANK-7B are Qwen2.5 fine-tunes, so this is what their tokenizers render; it lets
    prompts be built with no tokenizer at all (e.g. with :class:`~reasonrank.backends.FakeBackend`).
    Qwen3's template renders system/user/assistant turns the same way, except that it adds no default
    system message.

    Examples:
        >>> qwen25_chatml([{"role": "user", "content": "hi"}]).splitlines()[1]
        'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>'
    """
    parts: list[str] = []
    if messages and messages[0]["role"] == "system":
        parts.append("<|im_start|>system\n" + messages[0]["content"] + "<|im_end|>\n")
    else:
        parts.append("<|im_start|>system\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\n")
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "user" or (role == "system" and i > 0) or role == "assistant":
            parts.append("<|im_start|>" + role + "\n" + message["content"] + "<|im_end|>\n")
        elif role != "system":
            raise InvalidInputError(f"the built-in ChatML renderer does not know the role {role!r}")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def apply_chat_template(messages: Sequence[Mapping[str, str]], tokenizer: Any = None) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``, as official.

    With ``tokenizer=None`` the built-in Qwen2.5 ChatML renderer is used. No ``enable_thinking`` argument is
    passed (official), so Qwen3 tokenizers render their default thinking mode.
    """
    if tokenizer is None:
        return qwen25_chatml(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidInputError(
            f"the tokenizer {type(tokenizer).__name__} has no chat template; set tokenizer.chat_template, "
            "or pass tokenizer=None to render with the built-in Qwen2.5 ChatML template"
        )
    rendered = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    if not isinstance(rendered, str):
        raise InvalidInputError("tokenizer.apply_chat_template(..., tokenize=False) did not return a str")
    return rendered
