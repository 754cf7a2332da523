"""The permission matrix: allow-list × risk × approval policy, and file globs."""

from __future__ import annotations

import pytest

from edgecrew.errors import ToolError
from edgecrew.tools.base import spec_from_function
from edgecrew.tools.permissions import FilePolicy, needs_approval, refusal


def make(risk: str):  # type: ignore[no-untyped-def]
    def act(x: int) -> int:
        """Act."""
        return x

    return spec_from_function(act, name=f"t.{risk}", risk=risk)  # type: ignore[arg-type]


@pytest.mark.parametrize("risk", ["safe", "risky", "forbidden"])
@pytest.mark.parametrize("listed", [True, False])
@pytest.mark.parametrize("policy", ["always", "once", "never"])
@pytest.mark.parametrize("approved_before", [True, False])
def test_matrix(risk: str, listed: bool, policy: str, approved_before: bool) -> None:
    spec = make(risk)
    allowed = [spec.name] if listed else ["other.tool"]
    refused = refusal("agent", allowed, spec, spec.name)
    if not listed:
        assert refused is not None and "not allowed for agent 'agent'" in refused
        return
    if risk == "forbidden":
        assert refused == f"tool '{spec.name}' is forbidden"
        return
    assert refused is None
    approved = {spec.name} if approved_before else set()
    waits = needs_approval(spec, policy, approved)
    expected = risk == "risky" and (policy == "always" or (policy == "once" and not approved_before))
    assert waits is expected


def test_a_risky_call_with_arguments_its_tool_refuses_waits_for_nobody() -> None:
    spec = make("risky")
    assert needs_approval(spec, "always", set(), {"x": 1}) is True
    assert needs_approval(spec, "always", set(), {"y": 1}) is False  # fails its own checks, no person asked
    assert needs_approval(spec, "always", set(), {"x": "many"}) is False


def test_unknown_tool_is_refused_with_the_allowed_list() -> None:
    assert refusal("a", ["files.read"], None, "nope") == "there is no tool 'nope'; allowed: files.read"


@pytest.mark.parametrize(
    ("path", "mode", "ok"),
    [
        ("plans/q1.md", "read", True),
        ("drafts/a/b.md", "write", True),
        ("plans/q1.md", "write", False),
        ("secrets.txt", "read", False),
        ("./drafts/x.md", "write", True),
    ],
)
def test_file_policy(path: str, mode: str, ok: bool) -> None:
    policy = FilePolicy(read=("plans/*", "drafts/*"), write=("drafts/*",))
    assert policy.allows(path, mode) is ok
    if not ok:
        with pytest.raises(ToolError, match=f"may not {mode} '{path}'"):
            policy.check(path, mode, "strategist")
