"""Edge conditions: what they evaluate to, which fields they read, and what they refuse to compile."""

from __future__ import annotations

from typing import Any

import pytest

from edgecrew.domain.conditions import MAX_LENGTH, ConditionSyntaxError, compile_condition


@pytest.mark.parametrize(
    ("source", "output", "expected"),
    [
        ("verdict == 'revise'", {"verdict": "revise"}, True),
        ("verdict == 'revise'", {"verdict": "approve"}, False),
        ("verdict == 'revise'", {}, False),
        ("verdict != 'revise'", {"verdict": "approve"}, True),
        ("score >= 0.8 and not done", {"score": 0.9, "done": False}, True),
        ("score >= 0.8 and not done", {"score": 0.9, "done": True}, False),
        ("score >= 0.8 and not done", {"score": 0.5, "done": False}, False),
        ("score >= 0.8 and not done", {"done": False}, False),  # None >= 0.8 does not match
        ("'bug' in notes", {"notes": "found a bug here"}, True),
        ("'bug' in notes", {"notes": "all good"}, False),
        ("'bug' in notes", {}, False),
        ("'bug' not in notes", {}, True),
        ("not ('bug' in notes)", {}, True),  # a missing field contains nothing
        ("'bug' not in notes", {"notes": "a bug"}, False),
        ("len(steps) > 2", {"steps": ["a", "b", "c"]}, True),
        ("len(steps) > 2", {"steps": ["a"]}, False),
        ("len(steps) == 0", {}, True),
        ("verdict in ['approve', 'ok']", {"verdict": "ok"}, True),
        ("verdict in ('approve', 'ok')", {"verdict": "revise"}, False),
        ("review.verdict == 'approve'", {"review": {"verdict": "approve"}}, True),
        ("review['verdict'] == 'approve'", {"review": {"verdict": "approve"}}, True),
        ("review.verdict == null", {"review": "not a mapping"}, True),
        ("steps[0] == 'plan'", {"steps": ["plan", "do"]}, True),
        ("steps[-1] == 'do'", {"steps": ["plan", "do"]}, True),
        ("steps[5] == null", {"steps": ["plan"]}, True),
        ("a.b[0].c == 3", {"a": {"b": [{"c": 3}]}}, True),
        ("1 < n < 5", {"n": 3}, True),
        ("1 < n < 5", {"n": 7}, False),
        ("-n < 0", {"n": 3}, True),
        ("done == true", {"done": True}, True),
        ("done == false", {"done": True}, False),
        ("missing == null", {}, True),
        ("a or b", {"b": 1}, True),
        ("a or b", {}, False),
        ("n > 3", {"n": "text"}, False),  # unrelated types: no match, no crash
        ("-label == 1", {"label": "x"}, False),
        (r"'\d' in notes", {"notes": r"match \d+"}, True),
    ],
)
def test_evaluate(source: str, output: dict[str, Any], expected: bool) -> None:
    assert compile_condition(source).evaluate(output) is expected


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("verdict == 'revise'", {"verdict"}),
        ("score >= 0.8 and not done", {"score", "done"}),
        ("len(steps) > 2", {"steps"}),
        ("a.b == 1 and c['d'] > 2 and e[0] == f", {"a", "c", "e", "f"}),
        ("flag == true or other == null or x == false", {"flag", "other", "x"}),
        ("'bug' in notes", {"notes"}),
    ],
)
def test_names_are_the_top_level_fields_read(source: str, names: set[str]) -> None:
    assert compile_condition(source).names == frozenset(names)


def test_conditions_compare_by_source() -> None:
    a, b = compile_condition("x == 1"), compile_condition("x == 1")
    assert a == b
    assert hash(a) == hash(b)
    assert a != compile_condition("x == 2")


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "__import__('os').system('touch /tmp/pwned')",
        "open('/etc/passwd')",
        "eval('1')",
        "getattr(verdict, 'upper')",
        "verdict.upper() == 'A'",
        "'x'.join(items)",
        "(lambda: 1)()",
        "lambda: 1",
        "[x for x in items]",
        "{x for x in items}",
        "{k: 1 for k in items}",
        "any(x for x in items)",
        "a if b else c",
        "score + 1 > 2",
        "2 ** 999999 > 1",
        "~flags",
        "a is None",
        "a is not b",
        "{'a', 'b'}",
        "{'a': 1}",
        "f'{a}' == 'x'",
        "(x := 1)",
        "items[a]",
        "items[1:2]",
        "items[True]",
        "len",
        "len(a, b)",
        "len(*a)",
        "len(x=a)",
        "len(a).bit_length()",
        "(1).__class__",
        "'abc'[0]",
    ],
)
def test_anything_but_the_whitelist_is_refused_at_compile_time(source: str) -> None:
    with pytest.raises(ConditionSyntaxError):
        compile_condition(source)


def test_attribute_access_reads_mapping_keys_never_python_attributes() -> None:
    # A string has .upper and .__class__ as Python attributes; a condition must not see them.
    condition = compile_condition("s.upper == null and s.__class__ == null and d.keys == null")
    assert condition.evaluate({"s": "abc", "d": {"a": 1}}) is True
    assert compile_condition("d.keys == 1").evaluate({"d": {"keys": 1}}) is True


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("verdict = 'revise'", "cannot parse condition"),
        ("verdict ==", "cannot parse condition"),
        ("", "cannot parse condition"),
        ("a\x00", "cannot parse condition"),
        ("not " * 200 + "x", f"longer than {MAX_LENGTH}"),
        ("open('x')", "only len() may be called"),
        ("a + 1", "BinOp is not allowed"),
        ("a is None", "operator Is is not allowed"),
        ("~a", "only 'not' and '-'"),
        ("items[a]", "subscripts must be a constant"),
        ("len", "len must be called"),
    ],
)
def test_error_messages_say_what_is_wrong(source: str, fragment: str) -> None:
    with pytest.raises(ConditionSyntaxError) as info:
        compile_condition(source)
    assert fragment in str(info.value)


def test_deep_nesting_within_the_length_cap_compiles() -> None:
    source = "not " * 100 + "done"
    assert len(source) <= MAX_LENGTH
    assert compile_condition(source).evaluate({"done": True}) is True  # an even number of nots
