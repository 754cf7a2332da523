"""Chat on top of team runs: a model id names a team (``echo``) or one of its agents (``echo/solo``).

A chat request becomes one ordinary durable run, so it is recorded, resumable and visible like any
other: the task is the conversation's last user message, with the earlier messages in front as a
transcript. An agent is run as a one-agent team built from its team's snapshot (same model, tools,
limits, preamble and approval policy), named ``team/agent`` so its runs are easy to find.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgecrew.domain.runs import ANSWER_SAYS_FAILED, RunStatus
from edgecrew.domain.snapshot import team_from_snapshot
from edgecrew.domain.specs import END, TeamSpec
from edgecrew.domain.templating import TemplateProblem, unguarded_outputs
from edgecrew.domain.transcript import transcript_task
from edgecrew.engine.approvals import ApprovalService
from edgecrew.engine.service import TASK_PATTERN, RunService
from edgecrew.errors import ModelNotFound, SpecError, UserError
from edgecrew.store.repo import RunRecord

if TYPE_CHECKING:
    from edgecrew.engine.runtime import Runtime


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation: a known role and its text."""

    role: str
    content: str


DECIDED_GRACE_S = 10.0  # how long an answer waits for a run whose approvals are decided to go on


@dataclass(frozen=True)
class ChatTarget:
    """What a chat client may name as its model: a team, or one agent of a team."""

    id: str
    created: int  # when its spec file last changed (Unix seconds)


@dataclass(frozen=True)
class ChatStart:
    """A chat's run, started now or found again by its idempotency key."""

    run_id: str
    model: str
    created: int
    notices: tuple[str, ...] = ()  # what its start said (spec warnings; no live cluster worker to run it)


@dataclass(frozen=True)
class ChatAnswer:
    """How a chat's run ended: the assistant's text, or why there is none, and the tokens it used."""

    run: RunRecord
    text: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def ok(self) -> bool:
        return self.run.status == RunStatus.SUCCEEDED

    @property
    def waiting(self) -> bool:
        """Followed with ``stop_when_waiting``, the run waits for a person: no answer yet, no failure."""
        return self.run.status == RunStatus.WAITING_APPROVAL

    @property
    def error(self) -> str:
        return run_failure(self.run)


def internal_team(spec: TeamSpec, use: str = "chat with") -> str | None:
    """Why a person cannot ``use`` ``spec`` (a team edgecrew starts itself: ``internal: true``), or None."""
    if not spec.internal:
        return None
    why = "its YAML says internal: true: edgecrew starts it itself"
    return f"team '{spec.name}' is internal ({why}), not one to {use}"


def public_teams(rt: Runtime) -> list[str]:
    """The teams offered to people (chat, the UI's run forms, MCP, A2A): every team but the internal ones
    (one whose spec does not load stays listed: starting it says what is wrong)."""
    catalog = rt.catalog()
    out = []
    for name, source in sorted(rt.project.teams.items()):
        try:
            if rt.project.load_source(source, catalog).internal:
                continue
        except SpecError:
            pass
        out.append(name)
    return out


class ChatService:
    """Lists chat models, starts a chat's run and waits for its answer."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self.rt = runs.rt

    def teams(self) -> list[str]:
        """The teams a person may chat with: :func:`public_teams`."""
        return public_teams(self.rt)

    def models(self) -> list[ChatTarget]:
        """Every valid team, then each of its agents that can answer alone as ``team/agent``; invalid
        and internal teams are left out, and so are agents that read another agent's output
        (:func:`needs_others`)."""
        catalog = self.rt.catalog()
        out: list[ChatTarget] = []
        for name, source in sorted(self.rt.project.teams.items()):
            try:
                spec = self.rt.project.load_source(source, catalog)
            except SpecError:
                continue
            if spec.internal:
                continue
            try:
                created = int(source.file.stat().st_mtime)
            except OSError:
                created = 0
            out.append(ChatTarget(name, created))
            out += [ChatTarget(f"{name}/{agent}", created) for agent in spec.agents if not needs_others(spec, agent)]
        return out

    def team_for(self, model: str) -> TeamSpec:
        """The team a model id names (404 for an unknown team or agent, 422 for an invalid spec)."""
        team, slash, agent = model.partition("/")
        if team not in self.rt.project.teams:  # by name only: a model id is never a path to a file
            known = ", ".join(self.teams()) or "none"
            raise ModelNotFound(
                f"no model '{model}': models are team names or team/agent (teams: {known}); see GET /v1/models"
            )
        spec = self.rt.project.load_source(self.rt.project.teams[team], self.rt.catalog())
        if why := internal_team(spec):
            raise ModelNotFound(f"no model '{model}': {why}; GET /v1/models lists the teams to talk to")
        if not slash:
            return spec
        if agent not in spec.agents:
            raise ModelNotFound(
                f"no model '{model}': team '{team}' has no agent '{agent}' (it has: {', '.join(spec.agents)})"
            )
        if others := needs_others(spec, agent):
            reads = ", ".join(f"outputs.{other}" for other in others)
            raise ModelNotFound(
                f"no model '{model}': agent '{agent}' of team '{team}' reads {reads}, which only its team's"
                f" run has, so it cannot answer alone; ask model '{team}'"
            )
        return single_agent_team(spec, agent)

    async def start(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ChatStart:
        """Start the run that answers ``messages``; a repeated idempotency key finds the first run."""
        spec = await asyncio.to_thread(self.team_for, model)
        started = await self.runs.start(
            spec, compose_task(messages), request_id=request_id, idempotency_key=idempotency_key
        )
        return ChatStart(started.run.id, model, int(started.run.created_at), tuple(started.notices))

    async def answer(self, run_id: str, *, stop_when_waiting: bool = False) -> ChatAnswer:
        """Wait for the run to end (through approvals, if it asks for any, unless ``stop_when_waiting``:
        then also until it waits for one, its workflow going on in this process once a person decides)
        and read its answer."""
        await self.runs.follow(run_id, stop_when_waiting=stop_when_waiting)
        done = await self.runs.summary(run_id)
        for _ in range(int(DECIDED_GRACE_S / 0.1)):
            # Its approvals decided (just now: a client asking again once it approved) and the workflow
            # not yet back from its wait: the run goes on at once, so its answer is worth the wait.
            if done.run.status != RunStatus.WAITING_APPROVAL or await asyncio.to_thread(self._pending, run_id):
                break
            await asyncio.sleep(0.1)
            await self.runs.follow(run_id, stop_when_waiting=stop_when_waiting)
            done = await self.runs.summary(run_id)
        text = answer_text(done.run.output) if done.ok else ""
        return ChatAnswer(done.run, text, done.usage.prompt_tokens, done.usage.completion_tokens)

    def _pending(self, run_id: str) -> bool:
        return bool(ApprovalService(self.rt).list("pending", run_id))


def needs_others(spec: TeamSpec, agent: str) -> list[str]:
    """The other agents of ``spec`` whose output ``agent`` reads unguarded (in its template, input or
    arguments): alone, as a one-agent team, it would fail on its first step, since none of them ran."""
    doc = spec.agents[agent]
    read: set[str] = set()
    for value in (doc.template, doc.input, dict(doc.arguments)):
        try:
            read |= unguarded_outputs(value)
        except TemplateProblem:  # a valid spec's templates parse; validation reports one that does not
            continue
    return sorted(read & (set(spec.agents) - {agent}))


def single_agent_team(spec: TeamSpec, agent: str) -> TeamSpec:
    """A team of ``agent`` alone (start → end), keeping its team's preamble, approval policy and limits."""
    raw = dict(spec.raw)
    doc = {
        **raw,
        "name": f"{spec.name}/{agent}",
        "description": f"agent '{agent}' of team '{spec.name}' on its own",
        "agents": {agent: raw["agents"][agent]},
        "graph": {"start": agent, "edges": [{"from": agent, "to": END}]},
        "output": None,
    }
    return team_from_snapshot(doc, source=f"{spec.source} (agent {agent})")


def compose_task(messages: Sequence[ChatMessage]) -> str:
    """A transcript of the earlier messages (when there are any), then the last user message.

    One ``role: text`` line per message and a plain closing instruction: of the framings tried on
    SmolLM2-135M, this one is answered instead of repeated back.
    """
    if not messages or messages[-1].role != "user":
        raise UserError("the last message must come from the user: it is the task the team works on")
    if re.search(TASK_PATTERN, messages[-1].content) is None:
        raise UserError("the last message is empty: it is the task the team works on, so say what it should do")
    *earlier, last = messages
    return transcript_task([(m.role, m.content) for m in earlier], last.content)


def has_answer(run: RunRecord) -> bool:
    """Whether a run ended with an answer for whoever asked: it succeeded, or every agent finished and
    its answer says the work failed (the team's ``failed_when``: a name the rules refuse), which is that
    answer's to tell, with what to do."""
    if run.status == RunStatus.SUCCEEDED:
        return True
    said_failed = (run.error or "").startswith(ANSWER_SAYS_FAILED)
    return run.status == RunStatus.FAILED and said_failed and run.output is not None


def run_failure(run: RunRecord) -> str:
    """Why a run that did not succeed gave no answer, in one message for every entry point (the answer
    itself when it says why its work failed)."""
    if run.status == RunStatus.CANCELLED:
        return f"run {run.id} was cancelled" + (f": {run.error}" if run.error else "")
    if has_answer(run):
        return f"run {run.id} failed, and its answer says why:\n\n{answer_text(run.output)}"
    return f"run {run.id} {run.status.value}: {run.error or 'no error was recorded'}"


def answer_text(output: Any) -> str:
    """A run's output as the assistant's text: a lone ``text`` field as it is, anything else as JSON."""
    if isinstance(output, dict) and set(output) == {"text"} and isinstance(output["text"], str):
        return output["text"]
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False)


def pieces(text: str, size: int = 48) -> Iterator[str]:
    """The answer cut at word ends into pieces of about ``size`` characters (a stream's deltas)."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + 1, end + 1)
            end = space + 1 if space > start else end
        yield text[start:end]
        start = end
