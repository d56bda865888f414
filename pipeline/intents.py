"""Which follow-up a chat question asks for, in time linear in the question.

The intents are data: ``prompts/explain.json``, key ``intents``, tried in order; the first intent with
a pattern found in the question (``re.search``, case-insensitive) names it (the same semantics as the
explainer has always had). Python's ``re`` backtracks, so a pattern such as ``compar\\w*.*\\bmethods?\\b``
takes cubic time on ``"compar_" * 286`` (2.2 s for 2,000 characters, holding the interpreter lock).
Every pattern in the table is therefore written to run in linear time:

* "X, later on the same line, Y" is ``(?m)^(?>.*?X).*Y``: the first X of each line is found once
  (an atomic group never gives it back), then one scan looks for Y;
* a whole-question pattern is anchored (``\\A ... \\Z``) and its runs are possessive (``*+``), so no
  run is ever re-split between two quantifiers;
* the rest are keywords with word boundaries and bounded alternatives.

``tests/test_intents.py`` holds every pattern to that on adversarial questions of the maximum length,
and checks the rewritten patterns against the original ones on random short questions. Questions
are capped at :data:`MAX_QUESTION_CHARS`.

:func:`roles_in` and :func:`spaces_in` say which inputs and which spaces a question names.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from .analogy import ROLES
from .config import PROMPTS_DIR
from .errors import ApiInputError

MAX_QUESTION_CHARS = 2000
INTENTS_PATH = PROMPTS_DIR / "explain.json"


@lru_cache(maxsize=1)
def intent_table() -> tuple[tuple[str, tuple[re.Pattern, ...]], ...]:
    """``((intent name, compiled case-insensitive patterns), ...)`` in the order they are tried."""
    spec = json.loads(INTENTS_PATH.read_text(encoding="utf-8"))
    return tuple((intent["name"], tuple(re.compile(p, re.IGNORECASE) for p in intent["patterns"]))
                 for intent in spec["intents"])


def check_question_length(question: str) -> None:
    """Refuse a question longer than :data:`MAX_QUESTION_CHARS` with an :class:`ApiInputError`."""
    if len(question) > MAX_QUESTION_CHARS:
        raise ApiInputError(f"question: {len(question):,} characters, over the limit of {MAX_QUESTION_CHARS:,}; "
                            "ask a shorter question.")


def match_intent(question: str) -> str | None:
    """The name of the first intent whose pattern occurs in ``question``, else ``None``.

    Time linear in ``len(question)``; a question over :data:`MAX_QUESTION_CHARS` characters is refused
    (:class:`pipeline.errors.ApiInputError`)."""
    check_question_length(question)
    for name, patterns in intent_table():
        if any(p.search(question) for p in patterns):
            return name
    return None


# --- what a question names ------------------------------------------------------------------------


def roles_in(question: str) -> list[str]:
    """Inputs named in a question: capital A/B/C as words, or 'image c' / 'input b' in any case."""
    roles = set(re.findall(r"\b([ABC])\b", question))
    roles |= {r.upper() for r in re.findall(r"\b(?:image|input|picture|photo)\s+([abc])\b", question, flags=re.IGNORECASE)}
    return [r for r in ROLES if r in roles] or list(ROLES)


def spaces_in(question: str, data: dict) -> list[dict]:
    """The spaces a question is about ('caption' / 'image' in it), else both (that exist)."""
    wants_caption = re.search(r"\bcaptions?\b", question, flags=re.IGNORECASE) is not None
    wants_image = re.search(r"\bimage\b|\bconvnet\b|\bactivations?\b", question, flags=re.IGNORECASE) is not None
    spaces = []
    if wants_image or not wants_caption:
        spaces.append(data["image_space"])
    if (wants_caption or not wants_image) and data.get("caption_space") is not None:
        spaces.append(data["caption_space"])
    return spaces
