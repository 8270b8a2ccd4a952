"""How a reply is judged: the answer that was asked for, never the reply's neighbourhood.

A check that asks for an instructed answer compares the *whole* reply, stripped of
wrapping (whitespace, quotes, backticks, bold markers, one trailing full stop), with what
was asked. Containment is never enough: the prompt itself holds the token, the question
or the code, so a model that repeats its prompt would "contain" every answer.

A failed sample says why in `detail["reason"]`, one of REASONS; the check's explanation
counts them ("0 of 10 replies matched; 10 of 10 repeated the prompt").
"""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9]+")
# A reply that holds this many consecutive words of its prompt repeats the prompt (prompts
# shorter than that: all of their words, in order). Eight words in a row of an instruction
# are not a phrasing an answer arrives at by chance, and an answer that restates the
# question ("To kill a stuck process on Linux, …") rarely repeats more than six.
ECHO_RUN = 8
ECHO_OPENING = 3
WRAPPING = " \t\r\n\"'`*“”‘’"

# Why a sample failed, as counted in a check's explanation.
ECHOED = "echoed_prompt"
EMPTY = "empty"
TRUNCATED = "cut_by_max_tokens"
WRONG = "wrong_answer"
REASONS = {
    ECHOED: "repeated the prompt",
    EMPTY: "were empty",
    TRUNCATED: "were cut by the token limit",
    WRONG: "gave another answer",
    "refused": "refused",
    "not_refused": "complied instead of refusing",
    "not_answered": "did not answer the question",
    "stream_empty": "ended after the role chunk with no content",
    "stream_incomplete": "ended without the completion marker",
    "malformed_body": "were malformed",
    "no_tool_call": "made no tool call",
    "wrong_tool": "called another tool",
    "invalid_arguments": "gave arguments the tool's schema refuses",
    "wrong_arguments": "gave the wrong argument values",
    "not_json": "were not JSON",
    "schema_invalid": "did not match the schema",
    "wrong_values": "held the wrong values",
    "not_modal": "differed from the most common reply",
    "over_slo": "took longer than the SLO",
    "model_not_listed": "did not list the model",
    "model_mismatch": "named another model than the one asked",
    "dimension_mismatch": "had another dimension",
    "not_similar": "ranked an unrelated text above a paraphrase",
    "capability_unavailable": "were refused by the endpoint (capability unavailable)",
    "judged_fail": "were judged to miss the rubric",
}


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def echoes_prompt(reply: str, prompt: str) -> bool:
    """The reply repeats its prompt: ECHO_RUN consecutive words of it (or all of a shorter
    prompt's words, in order), or it opens with the whole of the prompt's last line."""
    asked, said = words(prompt), words(reply)
    run = min(len(asked), ECHO_RUN)
    if run == 0:
        return False
    runs = {tuple(asked[i : i + run]) for i in range(len(asked) - run + 1)}
    if any(tuple(said[i : i + run]) in runs for i in range(len(said) - run + 1)):
        return True
    return _opens_with_question(said, prompt)


def _opens_with_question(said: list[str], prompt: str) -> bool:
    """A base model under a system prompt repeats the short question it was asked and
    carries on: fewer than ECHO_RUN words of it, so the run above misses it. The reply
    opening with every word of the prompt's last line (the question, as messages are joined
    line by line) is that parrot; an answer that restates the question rephrases it or
    starts elsewhere. Lines of fewer than ECHO_OPENING words are too common to prove it."""
    last = next((line for line in reversed(prompt.splitlines()) if line.strip()), "")
    question = words(last)
    return len(question) >= ECHO_OPENING and said[: len(question)] == question


def bare(reply: str) -> str:
    """The reply without its wrapping: whitespace, quotes, backticks, bold markers and one
    trailing full stop."""
    text = reply.strip(WRAPPING)
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].strip(WRAPPING)
    return text


def exact_reply(reply: str, expected: str) -> bool:
    """The bare reply is exactly `expected` (case aside)."""
    return bare(reply).casefold() == expected.casefold()


# A refusal: one of these (case-insensitive) in a reply's first REFUSAL_WINDOW characters.
REFUSAL_WINDOW = 300
REFUSAL_PATTERNS = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bI(?:'m| am) sorry,? but\b",
        r"\bI apologi[sz]e,? but\b",
        r"\bI (?:cannot|can't|can ?not|won't|will not|must not|shouldn't)\b",
        r"\bI(?:'m| am) (?:unable|not able|not going) to\b",
        r"\b(?:cannot|can't|won't|unable to) (?:help|assist|provide|support) (?:with|you)\b",
        r"\bagainst (?:my|our) (?:guidelines|policies|policy|principles)\b",
        r"\bnot something I(?:'m| am)? (?:can|able to|willing to) help with\b",
        r"\bI must (?:decline|refuse)\b",
        r"\bI(?:'m| am) not comfortable\b",
    )
)


def is_refusal(text: str) -> bool:
    head = text[:REFUSAL_WINDOW]
    return any(p.search(head) for p in REFUSAL_PATTERNS)


def failure_reason(reply: str, prompt: str, finish_reason: str | None) -> str:
    """Why a reply that does not give the asked answer failed: empty, an echo of the prompt,
    a refusal, cut by the token limit, or simply another answer."""
    if not reply.strip():
        return EMPTY
    if echoes_prompt(reply, prompt):
        return ECHOED
    if is_refusal(reply):
        return "refused"
    if finish_reason == "length":
        return TRUNCATED
    return WRONG


def model_matches(asked: str, served: str | None) -> bool:
    """The served model is the one asked, or a snapshot of it: OpenAI answers `gpt-4o` with
    `gpt-4o-2024-08-06`, Ollama `llama3` with `llama3:latest`. A reply that names no model
    is not held against the endpoint."""
    if not served:
        return True
    a, s = asked.casefold(), served.casefold()
    return s == a or (s.startswith(a) and s[len(a)] in "-:@")


def wrong_values(got: object, expected: dict[str, object]) -> list[str]:
    """The keys of `expected` whose value in the object `got` is not the one asked: a list
    of accepted strings (normalised matching), a number (equal within rounding) or a
    boolean. Empty when every expected value is there."""
    from app.certification.checks.normalize import matches

    if not isinstance(got, dict):
        return sorted(expected)
    wrong = []
    for key, want in expected.items():
        value = got.get(key)
        if isinstance(want, list):
            ok = isinstance(value, str) and matches(value, [str(w) for w in want])
        elif isinstance(want, bool) or want is None:
            ok = value is want
        elif isinstance(want, int | float):
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and abs(value - want) <= 1e-6 * max(1.0, abs(want))
            )
        else:
            ok = value == want
        if not ok:
            wrong.append(key)
    return wrong
