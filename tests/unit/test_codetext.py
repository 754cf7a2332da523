"""Code out of a model's reply and checks out of a request (the filters code_block, given_checks,
without_checks)."""

from __future__ import annotations

import pytest

from edgecrew.domain.codetext import code_block, given_checks, without_checks
from edgecrew.domain.templating import render_value


def test_the_program_is_the_first_fenced_block_with_its_indentation() -> None:
    reply = "Sure:\n```python\nn = int(input())\nif n:\n    print(n)\n```\nThat prints n.\n```\nother\n```"
    assert code_block(reply) == "n = int(input())\nif n:\n    print(n)\n"


def test_a_fence_that_closes_at_the_end_of_a_line_of_code_ends_the_program() -> None:
    reply = '```python\nif n:\n    print("No")```\nIt failed: the checks say so.'
    assert code_block(reply) == 'if n:\n    print("No")\n'


def test_an_unclosed_block_runs_to_the_end_and_a_reply_without_one_is_the_program() -> None:
    assert code_block("```py\nprint(1)\n") == "print(1)\n"  # cut off at max_tokens before its fence
    assert code_block("print(2)") == "print(2)\n"


def test_checks_are_json_strings_or_bare_text_separated_by_semicolons_or_lines() -> None:
    request = 'reverse it. Checks: abc -> cba; "a;b" -> "b;a"\n"x\\"y" -> "y\\"x"; "1\\n2" -> "2"'
    assert given_checks(request) == [
        {"input": "abc", "expected": "cba"},
        {"input": "a;b", "expected": "b;a"},
        {"input": 'x"y', "expected": 'y"x'},
        {"input": "1\n2", "expected": "2"},
    ]
    assert without_checks(request) == "reverse it."
    assert given_checks("a program that adds two numbers") == []
    assert without_checks("a program that adds two numbers") == "a program that adds two numbers"


@pytest.mark.parametrize(
    ("request_text", "problem"),
    [
        ("x. Checks: 1 -> 1; 2 = 2", "check 2 ('2 = 2') has no '->'"),
        ("x. Checks:", "'Checks:' names no check"),
        ('x. Checks: "abc -> cba', "is not a complete JSON string"),
        ("x. Checks: 5 -> ", "check 1 ('5 ->') expects no output"),
    ],
)
def test_a_check_that_cannot_be_read_is_an_error_naming_it(request_text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        given_checks(request_text)
    assert problem in str(caught.value)


def test_templates_read_them_as_filters() -> None:
    scope = {"task": "add. Checks: 2 3 -> 5", "outputs": {"coder": {"text": "```\nprint(5)\n```"}}}
    assert render_value("{{ task | given_checks }}", scope) == [{"input": "2 3", "expected": "5"}]
    assert render_value("{{ outputs.coder.text | code_block }}", scope) == "print(5)\n"
    assert render_value("{{ task | without_checks }}", scope) == "add."


def test_a_request_that_says_check_colon_in_passing_is_told_why_its_words_were_read_as_checks() -> None:
    # "a program that checks: whether ..." failed with "check 1 (...) has no '->'", not saying why its
    # words were taken for checks, nor how to say it otherwise.
    with pytest.raises(ValueError) as caught:
        given_checks("a program that checks: whether a number is prime")
    said = str(caught.value)
    assert "check 1 ('whether a number is prime') has no '->'" in said
    assert "what follows 'checks:' in the request is read as its checks" in said
    assert "or word the request without 'checks:'" in said
