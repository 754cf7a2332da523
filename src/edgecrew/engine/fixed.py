"""Agents that need no model, and the one entry that runs any agent's turn.

A model agent may also name its ``input``: its user message as a template over the same facts, so a
small model reads only the outputs it needs instead of everything said before it.

A ``tool`` agent calls its one tool with arguments rendered from the task and earlier outputs; a
``template`` agent renders its template over them. A tool agent whose call a person denies fails the
run, unless it says ``on_denied: continue``: then its output is ``{"denied": true, "tool", "reason",
"note"}`` (not checked against its ``output_schema``: the tool never ran) and the graph goes on, so a
team finishes its other work and its answer says what was denied, as it would for a tool's own "not
applied". The one design decision: both go through the
same :class:`~edgecrew.engine.agent.TurnIO` as a model agent's turn, so the tool call is the same
durable step (permissions, approval, sandbox, events) and a replay returns the recorded result,
while rendering is a pure function of the recorded outputs and needs no step of its own. Exact
facts (a machine's free memory, a tool's result) reach the answer without passing through a model.
"""

from __future__ import annotations

import json
from typing import Any

from edgecrew.domain.messages import Message, ToolCall
from edgecrew.domain.runs import Outcome
from edgecrew.domain.specs import AgentSpec
from edgecrew.domain.templating import TemplateProblem, render_arguments, render_text
from edgecrew.engine.agent import TurnInput, TurnIO, TurnResult, parse_output, run_turn

__all__ = ["run_agent"]


async def run_agent(agent: AgentSpec, turn: TurnInput, io: TurnIO, key: str, metadata: dict[str, str]) -> TurnResult:
    """One visit's turn, whatever the agent's kind."""
    if agent.kind == "tool":
        return await _tool_turn(agent, turn, io, key)
    if agent.kind == "template":
        return _template_turn(agent, turn)
    if not agent.input:
        return await run_turn(agent, turn.context, io, key, metadata)
    try:
        context = render_text(agent.input, turn.scope()).strip()
    except TemplateProblem as exc:
        return TurnResult(Outcome.ERROR, {}, f"agent '{agent.name}' could not render its input: {exc}")
    return await run_turn(agent, context, io, key, metadata)


async def _tool_turn(agent: AgentSpec, turn: TurnInput, io: TurnIO, key: str) -> TurnResult:
    result = TurnResult(outcome=Outcome.ERROR, output={})
    try:
        arguments = render_arguments(agent.arguments, turn.scope())
    except TemplateProblem as exc:
        result.error = f"agent '{agent.name}' could not build the arguments of '{agent.tool}': {exc}"
        return result
    call = ToolCall(id=f"{key}.t0", name=agent.tool, arguments=arguments)
    result.messages = [Message("assistant", "", tool_calls=(call,))]
    io.checkpoint("before_tool_call")
    observation = await io.call_tool(f"{key}.m0.t0", agent, call, agent.limits.timeout_s, f"tool agent {agent.name}")
    result.tool_calls = 1
    result.messages.append(Message("tool", observation.content, tool_call_id=call.id, name=call.name))
    if observation.denied is not None and agent.on_denied == "continue":
        result.outcome, result.output = Outcome.FINAL, _denied_output(agent.tool, observation.denied)
        return result
    if observation.is_error:
        result.outcome, result.error = Outcome.TOOL_ERRORS, f"'{agent.tool}' failed: {observation.content}"
        return result
    return _finish(agent, result, observation.content, _as_output(observation.content))


def _denied_output(tool: str, note: str) -> dict[str, Any]:
    """A tool agent's output when a person denied its call and the agent carries on (``on_denied:
    continue``): the call never ran, and ``note`` (the checklist's detail) says so, with the person's words."""
    why = f" ({note})" if note else ""
    return {"denied": True, "tool": tool, "reason": note, "note": f"not run: a person denied this call{why}"}


def _template_turn(agent: AgentSpec, turn: TurnInput) -> TurnResult:
    result = TurnResult(outcome=Outcome.ERROR, output={})
    try:
        text = render_text(agent.template, turn.scope()).strip()
    except TemplateProblem as exc:
        result.error = f"agent '{agent.name}' could not render its template: {exc}"
        return result
    result.messages = [Message("assistant", text)]
    return _finish(agent, result, text, {"text": text})


def _finish(agent: AgentSpec, result: TurnResult, text: str, output: dict[str, Any]) -> TurnResult:
    """The turn's output: as it is, or checked against the agent's output_schema when it has one."""
    if agent.output_schema is not None:
        output, problem = parse_output(agent, text)
        if problem is not None:
            result.outcome, result.error = Outcome.INVALID_OUTPUT, f"output does not match the schema: {problem}"
            return result
    result.outcome, result.output = Outcome.FINAL, output
    return result


def _as_output(content: str) -> dict[str, Any]:
    """A tool's result as an output: a JSON object as it is, any other JSON as ``value``, text as ``text``."""
    try:
        data = json.loads(content)
    except ValueError:
        return {"text": content}
    return data if isinstance(data, dict) else {"value": data}
