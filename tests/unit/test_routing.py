"""Model routing: tags, fallback chains, capability checks, and the events they leave."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgecrew.bootstrap import bootstrap
from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, StreamDelta, Usage
from edgecrew.engine import durable
from edgecrew.engine.routing import call_with_fallback
from edgecrew.errors import NotFoundError, SpecError
from edgecrew.models.base import ChatModel
from edgecrew.models.registry import ModelDef, ModelRegistry
from edgecrew.specs.project import load_project
from tests.conftest import write
from tests.unit.engine_helpers import run_team


@pytest.fixture(autouse=True)
def _dbos() -> Iterator[None]:
    yield
    durable.shutdown()


def test_candidates_expand_tags_and_fallbacks_without_cycles() -> None:
    registry = ModelRegistry(
        {
            "a": ModelDef("a", "scripted", tags=("coding",), fallbacks=("b",)),
            "b": ModelDef("b", "scripted", fallbacks=("a", "local")),
            "c": ModelDef("c", "scripted", tags=("coding",)),
        }
    )
    assert registry.candidates("a") == ["a", "b", "local"]
    assert registry.candidates("tag:coding") == ["a", "b", "local", "c"]
    assert "tag:coding" in registry.references() and "local-gemma" in registry.references()
    with pytest.raises(NotFoundError, match="no model has tag 'math'"):
        registry.candidates("tag:math")


def test_models_section_errors_name_file_and_line(project_dir: Path) -> None:
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          remote:
            backend: litellm
          mine:
            backend: llamacpp
            path: m.gguf
            fallbacks: [nosuch]
            memory: lots
    """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    text = str(info.value)
    assert f"{config}:2: model 'remote' (litellm) needs 'model'" in text
    assert f"{config}:7: model 'mine' falls back to unknown model 'nosuch'" in text
    assert f"{config}:8: cannot read size 'lots'" in text


FALLBACK_PROJECT = """
models:
  textonly: {backend: scripted, replies: ["x"], capabilities: [], tags: [custom]}
  primary: {backend: scripted, replies: [{error: unavailable, message: "server down"}], cycle: true,
            fallbacks: [backup], tags: [custom]}
  backup: {backend: scripted, replies: ["from backup"], cycle: true}
"""

TEAM = """
name: t
agents:
  a: {model: primary, system: x}
graph: {start: a, edges: [{from: a, to: end}]}
"""


async def test_failing_model_falls_back_and_events_say_so(project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", FALLBACK_PROJECT)
    rt = bootstrap()
    run, rt = await run_team(TEAM, rt.models.get("backup"))  # type: ignore[arg-type]
    assert run.status == "succeeded" and run.output == {"text": "from backup"}
    events = rt.store.events(run.id)
    fallback = next(e for e in events if e.type == "model_fallback")
    assert fallback.data == {"from": "primary", "to": "backup", "error": "server down"}
    called = next(e for e in events if e.type == "model_called")
    assert called.data["alias"] == "backup" and called.data["requested"] == "primary"
    assert called.data["fallbacks"] == [{"alias": "primary", "error": "server down"}]


async def test_tag_routing_skips_models_without_a_needed_capability(project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", FALLBACK_PROJECT)
    team = """
    name: t
    agents:
      a:
        model: {tag: custom}
        system: x
        output_schema: {type: object, properties: {v: {type: string}}}
    graph: {start: a, edges: [{from: a, to: end}]}
    """
    rt = bootstrap()
    run, rt = await run_team(team, rt.models.get("backup"))  # type: ignore[arg-type]
    events = rt.store.events(run.id)
    skipped = [e.data for e in events if e.type == "model_skipped"]
    calls = [e for e in events if e.type == "model_called"]
    # First call: textonly (declared first) is skipped; later calls try the resident primary first.
    assert skipped == [{"alias": "textonly", "reason": "lacks json_schema"}]
    assert [e.data["from"] for e in events if e.type == "model_fallback"] == ["primary"] * len(calls)
    assert run.status == "failed"  # backup answers text, which is not the JSON the schema asks for
    assert "invalid_output" in (run.error or "")


async def test_every_candidate_failing_fails_the_turn_with_each_reason(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """
        models:
          flaky: {backend: scripted, replies: [{error: context_overflow, message: too long}], cycle: true,
                  fallbacks: [worse]}
          worse: {backend: scripted, replies: [{error: timeout, message: slow}], cycle: true}
    """,
    )
    team = TEAM.replace("model: primary", "model: flaky")
    rt = bootstrap()
    run, rt = await run_team(team, rt.models.get("worse"))  # type: ignore[arg-type]
    assert run.status == "failed" and "slow" in (run.error or "")
    called = next(e for e in rt.store.events(run.id) if e.type == "model_called")
    assert [a["alias"] for a in called.data["fallbacks"]] == ["flaky", "worse"]


def test_tag_prefers_the_projects_models_then_resident_ones_then_declaration_order() -> None:
    registry = ModelRegistry(
        {
            "a": ModelDef("a", "scripted", tags=("coding",)),
            "b": ModelDef("b", "scripted", tags=("coding",)),
        }
    )
    assert registry.candidates("tag:coding") == ["a", "b", "local"]  # the built-in `local` codes too, last
    assert registry.candidates("tag:coding", frozenset({"b"})) == ["b", "a", "local"]
    # a resident built-in does not take the call from the project's own models (it did: build-loop's
    # generator left `local` resident and the coder's first version came from it, not the project's model)
    assert registry.candidates("tag:coding", frozenset({"local"})) == ["a", "b", "local"]
    assert registry.candidates("tag:coding", frozenset({"local", "b"})) == ["b", "a", "local"]


def test_a_projects_own_model_with_a_tag_comes_before_the_built_in_one() -> None:
    registry = ModelRegistry({"big": ModelDef("big", "scripted", tags=("coding",))})
    assert registry.candidates("tag:coding")[:2] == ["big", "local"]  # `local` is tagged coding too


class _IgnoresStop:
    """A model that writes ``text`` whole, in ``pieces`` when streamed, whatever the request's ``stop``."""

    name = "ignores-stop"

    def __init__(self, *pieces: str, usage: Usage | None = None) -> None:
        self.pieces, self.usage = pieces, usage or Usage()

    async def request(self, req: ModelRequest) -> ModelResponse:
        text = "".join(self.pieces)
        return ModelResponse(Message(role="assistant", content=text), self.usage, self.name, latency_s=2.0)

    async def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        for piece in self.pieces:
            yield StreamDelta(text=piece)
        yield StreamDelta(response=await self.request(req))


class _Instances:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @contextlib.asynccontextmanager
    async def use(self, alias: str) -> AsyncIterator[ChatModel]:
        yield self.registry.get(alias)


async def _response(model: _IgnoresStop, request: ModelRequest, streamed: bool) -> tuple[ModelResponse, list[str]]:
    registry, shown = ModelRegistry({}), []
    registry.register("m", model)
    on_text = shown.append if streamed else None
    routed = await call_with_fallback(registry, _Instances(registry), "m", request, 5, lambda event: None, on_text)
    assert routed.response is not None, routed.error
    return routed.response, shown


async def _routed(model: _IgnoresStop, request: ModelRequest, streamed: bool) -> tuple[str, list[str]]:
    response, shown = await _response(model, request, streamed)
    return response.message.content, shown


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_reply_is_cut_at_its_first_stop_string_when_the_model_ignores_stop(streamed: bool) -> None:
    model = _IgnoresStop("Ana.", "\nUs", "er: and me?", "\nuser: ...")
    ask = ModelRequest(messages=(Message("user", "Who?"),), stop=("\nuser:", "\nUser:"))
    answer, shown = await _routed(model, ask, streamed)
    assert answer == "Ana."
    assert shown == (["Ana."] if streamed else [])  # the held-back "\nUs" never shows
    # Text that only looks like the start of a stop string shows once the next piece says it is not one.
    answer, shown = await _routed(_IgnoresStop("Ana.\nU", "s too"), ask, streamed)
    assert answer == "Ana.\nUs too" and "".join(shown) == (answer if streamed else "")
    # Without stop strings, or with a structured reply (JSON a stop string would cut in two), nothing is cut.
    whole = "Ana.\nuser: and me?"
    for request in (replace(ask, stop=()), replace(ask, output_schema={"type": "string"})):
        answer, shown = await _routed(_IgnoresStop(whole), request, streamed)
        assert answer == whole and "".join(shown) == (whole if streamed else "")


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_cut_reply_keeps_the_usage_the_provider_reported(streamed: bool) -> None:
    """A provider that ignores `stop` generated (and bills) every token of the uncut text: the cut keeps
    its usage and latency, so tokens spent and tokens per second stay true, and no token count is made
    up from the shorter text shown."""
    spent = Usage(prompt_tokens=12, completion_tokens=40, cached_tokens=3)
    model = _IgnoresStop("Ana.", "\nuser: and me?\nassistant: " + "more " * 30, usage=spent)
    ask = ModelRequest(messages=(Message("user", "Who?"),), stop=("\nuser:",))
    response, _ = await _response(model, ask, streamed)
    assert response.message.content == "Ana."
    assert (response.usage, response.latency_s, response.tokens_per_second) == (spent, 2.0, 20.0)
