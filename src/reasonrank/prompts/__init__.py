"""Prompt templates: the exact chat messages and prompt strings each model family was trained on.

Examples:
    >>> from reasonrank.prompts import get_template
    >>> t = get_template("reasonrank")
    >>> prompt = t.render("capital of France", ["Paris is the capital of France.", "Berlin is in Germany."])
    >>> prompt.startswith("<|im_start|>system\\nYou are RankLLM") and prompt.endswith("<|im_start|>assistant\\n")
    True
"""

from ._base import (
    Template,
    available_templates,
    fix_text,
    get_template,
    register_template,
    replace_number,
    truncate_by_tokens,
)
from ._chat import apply_chat_template, qwen25_chatml
from ._rankgpt import RankGPTTemplate
from ._rearank import RearankTemplate
from ._reasonrank import ReasonRankTemplate

__all__ = [
    "RankGPTTemplate",
    "RearankTemplate",
    "ReasonRankTemplate",
    "Template",
    "apply_chat_template",
    "available_templates",
    "fix_text",
    "get_template",
    "qwen25_chatml",
    "register_template",
    "replace_number",
    "truncate_by_tokens",
]
