"""Answer normalisation for exact-answer grading.

Both the expected answer and the reply go through `normalize_answer`:
lower case; number words become digits ("forty-two" → "42", "one thousand" → "1000");
thousands separators inside numbers go ("1,000" → "1000"); other punctuation becomes
space, except a decimal point between digits; the articles a/an/the are dropped;
whitespace collapses. A reply matches only when its normalised form equals an accepted
answer's: "Paris." matches "Paris", "Paris or Lyon" does not; the prompt asks for the
bare answer, so a reply wrapped in a sentence fails.
"""

from __future__ import annotations

import re

UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
ARTICLES = {"a", "an", "the"}
NUMBER_WORDS = set(UNITS) | set(TENS) | set(SCALES)


def _words_to_number(words: list[str]) -> int:
    total = current = 0
    for word in words:
        if word in UNITS:
            current += UNITS[word]
        elif word in TENS:
            current += TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * SCALES[word]
            current = 0
    return total + current


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if token in NUMBER_WORDS or (token == "and" and run):
            run.append(token)
            continue
        if run:
            trailing_and = run[-1] == "and"
            words = [w for w in run if w != "and"]
            out.append(str(_words_to_number(words)))
            if trailing_and:
                out.append("and")
            run = []
        if token:
            out.append(token)
    return out


def normalize_answer(text: str) -> str:
    """The comparable form of an answer (see the module docstring)."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text)
    text = re.sub(r"[^\w\s\0]", " ", text).replace("\0", ".")
    tokens = [t for t in text.split() if t not in ARTICLES]
    return " ".join(_numbers_to_digits(tokens))


def matches(reply: str, answers: list[str]) -> bool:
    """True when the normalised reply equals one of the normalised accepted answers."""
    got = normalize_answer(reply)
    return any(got == normalize_answer(answer) for answer in answers if answer)
