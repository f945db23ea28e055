"""Reading a ranking out of a model's output, with the official semantics and a record of every repair.

The default style, ``"reasonrank"``, is ``RankLLM._clean_response`` + ``receive_permutation`` of the official
ReasonRank code (model-reference §1.8):

1. Search ``<think>.*?</think>\\s*<answer>(.*?)</answer>`` in the *lower-cased* output (tags are therefore
   case-insensitive). If it does not match but ``<answer>`` occurs (case-sensitive), read everything after
   its last occurrence; otherwise read the whole output (typically reasoning cut off at ``max_tokens``).
2. Every character that is not ``str.isdigit()`` becomes a space; each run of digits is ``int()``-ed and
   made 0-based. A digit that ``isdigit()`` accepts but ``int()`` rejects (``²``) leaves the window unchanged.
3. Duplicates are dropped (first occurrence kept), ids outside ``1..num`` are dropped, missing ids are
   appended in their original order.

The result is always a full permutation of ``range(num)``; ``strict=True`` raises instead of repairing.

Examples:
    >>> r = parse_ranking("<think>[2] beats [1]</think> <answer>[2] > [3] > [2]</answer>", 3)
    >>> r.order, [x.kind for x in r.repairs]
    ((1, 2, 0), ['duplicate', 'missing'])
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import InvalidInputError, ParseError, UnknownNameError
from ._types import Repair

__all__ = [
    "ANSWER_PATTERN",
    "Extraction",
    "ParseResult",
    "available_parser_styles",
    "parse_ranking",
    "register_parser_style",
]

# listwise_prompt_r1.toml, key `pattern` (a TOML literal string: `\s` is a regex whitespace class).
ANSWER_PATTERN = r"<think>.*?</think>\s*<answer>(.*?)</answer>"
_ANSWER_RE = re.compile(ANSWER_PATTERN, re.DOTALL)


@dataclass(frozen=True)
class Extraction:
    """What a parser style pulls out of the raw output before identifiers are read."""

    #: the answer part of the output (``None`` when it has none, e.g. reasoning cut off at ``max_tokens``)
    answer: str | None
    reasoning: str | None = None
    repair: Repair | None = None
    #: a number ``int()`` rejects (``²``) is skipped (REARANK) instead of leaving the window unchanged (ReasonRank)
    skip_invalid_numbers: bool = False
    #: the text identifiers are read from, when it is not ``answer`` (official parsers fall back to the whole
    #: output when there is no answer block)
    ids_from: str | None = None

    @property
    def ids_text(self) -> str:
        """The text identifiers are read from."""
        if self.ids_from is not None:
            return self.ids_from
        return self.answer or ""


@dataclass(frozen=True)
class ParseResult:
    """A parsed window answer: ``order`` is a full permutation of ``range(num)``, best first."""

    order: tuple[int, ...]
    answer: str | None
    reasoning: str | None
    ids: tuple[int, ...]
    repairs: tuple[Repair, ...]

    @property
    def ok(self) -> bool:
        """True when the answer was a clean, complete permutation inside an answer block."""
        return not self.repairs


def _reasoning_between_tags(text: str) -> str | None:
    """The text between ``<think>`` and ``</think>`` (or ``<answer>``, or the end), case-insensitive.

    Without an opening ``<think>`` but with a ``</think>`` (chat templates of Qwen3 and R1-style models put
    ``<think>`` in the prompt, so the output starts inside it), the reasoning is everything before ``</think>``.
    """
    lowered = text.lower()
    if len(lowered) != len(text):  # lower() changed lengths (rare); indices only hold on the lowered text
        text = lowered
    start = lowered.find("<think>")
    if start < 0:
        end = lowered.find("</think>")
        return text[:end].strip() if end >= 0 else None
    start += len("<think>")
    end = lowered.find("</think>", start)
    if end < 0:
        end = lowered.find("<answer>", start)
    return text[start : end if end >= 0 else len(text)].strip()


_THINK_END_ANSWER_RE = re.compile(r"</think>\s*<answer>")


def search_answer_block(lowered: str) -> tuple[int, int] | None:
    """Where ``re.search(ANSWER_PATTERN, lowered, re.DOTALL)`` finds group 1, in linear time.

    The regex backtracks from every ``<think>`` to the end of the text, which is quadratic on outputs full of
    opening tags. Same result: the leftmost match starts at the first ``<think>`` (a later start can only
    see a subset of the ``</think>`` positions); from there the lazy ``.*?`` takes the first
    ``</think>\\s*<answer>``, and the group runs to the next ``</answer>`` (if there is none, none follows a
    later ``<answer>`` either, so there is no match at all).

    Examples:
        >>> search_answer_block("<think>a</think> <answer>[1]</answer>")
        (25, 28)
    """
    start = lowered.find("<think>")
    if start < 0:
        return None
    middle = _THINK_END_ANSWER_RE.search(lowered, start + len("<think>"))
    if middle is None:
        return None
    end = lowered.find("</answer>", middle.end())
    return None if end < 0 else (middle.end(), end)


def _answer_after_think(text: str) -> str | None:
    """What follows the last ``</think>`` (case-insensitive), or None: the answer part of an output that has
    no ``<answer>`` tag (digits are still read from the whole text, as official)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        text = lowered
    end = lowered.rfind("</think>")
    if end < 0:
        return None
    return text[end + len("</think>") :].strip() or None


def _extract_reasonrank(text: str) -> Extraction:
    # Official: re.search(pattern, response.lower(), re.DOTALL); the ids are identical either way, and when
    # lower() keeps the length we report the answer in its original case.
    lowered = text.lower()
    span = search_answer_block(lowered)
    reasoning = _reasoning_between_tags(text)
    if span is not None:
        source = text if len(lowered) == len(text) else lowered
        return Extraction(source[span[0] : span[1]].strip(), reasoning)
    if "<answer>" in text:  # case-sensitive, as official
        tail = text.split("<answer>")[-1]
        end = tail.lower().find("</answer>")
        shown = (tail[:end] if end >= 0 and len(tail.lower()) == len(tail) else tail).strip()
        return Extraction(
            shown or None,
            reasoning,
            Repair(
                "answer_fallback",
                detail="no complete <think>...</think><answer>...</answer>; read after the last <answer>",
            ),
            ids_from=tail,
        )
    # Official: "the reasoning length is too long" -- digits are read from the whole text (reasoning included),
    # but only what follows </think> (if anything) is shown as the answer.
    return Extraction(
        _answer_after_think(text),
        reasoning,
        Repair("no_answer", detail="no <answer> block (output cut off?); identifiers read from the whole text"),
        ids_from=text,
    )


def _extract_whole_text(text: str) -> Extraction:
    # Official rank_GPT mode (no reasoning): digits are scraped from the whole response.
    return Extraction(text, None)


_STYLES: dict[str, Callable[[str], Extraction]] = {
    "reasonrank": _extract_reasonrank,
    "rankgpt": _extract_whole_text,
}


def register_parser_style(name: str, extract: Callable[[str], Extraction]) -> None:
    """Add a parser style: ``extract(output) -> Extraction`` picks the text identifiers are read from."""
    _STYLES[name] = extract


def available_parser_styles() -> list[str]:
    return sorted(_STYLES)


def parse_ranking(text: str, num: int, *, style: str = "reasonrank", strict: bool = False) -> ParseResult:
    """Parse a model's output for a window of ``num`` passages (ids ``[1]..[num]`` in the prompt).

    Examples:
        >>> parse_ranking("<think>...</think><answer>[3] > [1]</answer>", 3).order
        (2, 0, 1)
        >>> parse_ranking("no ranking at all", 2).order
        (0, 1)
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 0:
        raise InvalidInputError(f"num must be an int >= 0, got {num!r}")
    try:
        extract = _STYLES[style]
    except KeyError:
        raise UnknownNameError("parser style", style, available_parser_styles()) from None

    extraction = extract(text)
    repairs: list[Repair] = [extraction.repair] if extraction.repair else []
    digits_only = "".join(c if c.isdigit() else " " for c in extraction.ids_text).strip()
    identity = tuple(range(num))
    tokens = digits_only.split()
    numbers = [_to_int(tok) for tok in tokens]
    invalid = [tok for tok, n in zip(tokens, numbers) if n is None]
    if invalid and extraction.skip_invalid_numbers:
        # Official REARANK: `try: int(x) - 1 except: pass` -- only the bad number is lost.
        repairs.append(Repair("invalid_number", detail=f"{invalid!r} skipped: int() rejects them"))
    elif invalid:
        # Official ReasonRank: print('unexcepted output!') and return the window unchanged.
        repairs.append(
            Repair("invalid_number", detail=f"{invalid[0]!r} is not a number int() accepts; window kept as is")
        )
        result = ParseResult(identity, extraction.answer, extraction.reasoning, (), tuple(repairs))
        return _check_strict(result, text, strict)
    ids = tuple(n for n in numbers if n is not None)

    seen: set[int] = set()
    order: list[int] = []
    duplicates: list[int] = []
    out_of_range: list[int] = []
    for i in ids:
        if i in seen:
            duplicates.append(i)
            continue
        seen.add(i)
        if 1 <= i <= num:
            order.append(i - 1)
        else:
            out_of_range.append(i)
    placed = set(order)
    missing = [j for j in identity if j not in placed]
    order.extend(missing)
    if duplicates:
        repairs.append(Repair("duplicate", tuple(duplicates)))
    if out_of_range:
        repairs.append(Repair("out_of_range", tuple(out_of_range), detail=f"valid ids are 1..{num}"))
    if missing:
        repairs.append(Repair("missing", tuple(j + 1 for j in missing), detail="appended in original order"))
    result = ParseResult(tuple(order), extraction.answer, extraction.reasoning, ids, tuple(repairs))
    return _check_strict(result, text, strict)


def _to_int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:  # "²" (isdigit() but not a decimal), or more digits than int() converts
        return None


def _check_strict(result: ParseResult, text: str, strict: bool) -> ParseResult:
    if strict and result.repairs:
        kinds = ", ".join(f"{r.kind}{list(r.ids) if r.ids else ''}" for r in result.repairs)
        raise ParseError(f"model output is not a clean ranking ({kinds})", text=text, repairs=result.repairs)
    return result
