"""The echo rule (checks.grading.echoes_prompt): a reply that repeats its prompt never passes,
and an answer that restates its question is not taken for one."""

from __future__ import annotations

from app.certification.checks.grading import echoes_prompt

SYSTEM = (
    "You are the support assistant of Acme Cloud. Answer the customer's question in two or "
    "three sentences, from the help centre's articles only."
)


def test_eight_words_of_the_prompt_in_a_row_are_an_echo() -> None:
    prompt = "Reply with exactly this token and nothing else: apple-1"
    assert echoes_prompt(prompt + " mendatang the the", prompt)
    assert not echoes_prompt("apple-1", prompt)


def test_a_short_question_repeated_under_a_system_prompt_is_an_echo() -> None:
    prompt = f"{SYSTEM}\nHow do I reset my password?"
    assert echoes_prompt("How do I reset my password? mendatang the the", prompt)
    assert echoes_prompt("how do I reset my password", prompt)


def test_an_answer_that_restates_its_question_is_not_an_echo() -> None:
    prompt = f"{SYSTEM}\nWhat is the capital of France?"
    assert not echoes_prompt("The capital of France is Paris.", prompt)
    reset = f"{SYSTEM}\nHow do I reset my password?"
    assert not echoes_prompt(
        "To reset your password, open Settings, choose Security and follow the link we email you.",
        reset,
    )


def test_a_question_of_two_words_proves_nothing_at_the_start() -> None:
    prompt = f"{SYSTEM}\nHello there"
    assert not echoes_prompt("Hello there! How can I help you with Acme Cloud today?", prompt)
