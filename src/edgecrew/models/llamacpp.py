"""llama.cpp adapter: GGUF models in-process through llama-cpp-python.

Structured output and tool calls are both JSON constrained by a grammar built from a JSON Schema, so
even a 135M model can only emit a well-formed answer: with tools, the model must produce either
``{"tool": <one of the allowed names>, "arguments": {...}}`` or ``{"final": ...}``. The grammar cannot
enforce every keyword (``minimum``, ``uniqueItems``...) and generation can stop at ``max_tokens``
mid-object, so every constrained reply is also parsed and validated: a reply that does not satisfy
its schema raises :class:`ModelError` and is never returned as if it were an answer.

We drive ``Llama.generate`` ourselves instead of ``create_chat_completion`` because the latter
silently falls back to "any JSON" when a schema cannot be turned into a grammar, reports no usage
while streaming, and cannot be stopped once started. The Llama object is not thread-safe, so calls
are serialized by a lock and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgecrew.domain.messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamDelta,
    ToolCall,
    ToolDefinition,
    Usage,
)
from edgecrew.errors import InvalidOutputError, ModelError, UserError
from edgecrew.models.llamabuild import ensure_safe_build

# The sampling defaults of llama-cpp-python's chat completions, which SmolLM2 was tuned against.
_TOP_K, _TOP_P, _MIN_P, _REPEAT_PENALTY = 40, 0.95, 0.05, 1.1
_SHOWN = 200  # characters of a bad reply quoted in an error message

OnText = Callable[[str], None]


class LlamaCppModel:
    """A GGUF model run in-process by llama.cpp, loaded lazily on first use and then kept."""

    def __init__(
        self,
        path: Path | str,
        *,
        name: str = "local",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 42,
        prefix_cache: bool = True,
        cache_bytes: int = 256 * 2**20,
        constrain: bool = True,
        lazy_grammar: bool = True,
    ) -> None:
        self.name = name
        # constrain=False drops the grammar (replies are still validated): the baseline that shows
        # what constrained decoding buys a small model.
        self.constrain = constrain
        # lazy_grammar: check the grammar against the token the model picks, and filter the whole
        # vocabulary only when it rejects that token (see _GrammarOnRejection); False filters the
        # whole vocabulary for every token, as llama-cpp-python does.
        self.lazy_grammar = lazy_grammar
        # KV prefix reuse: the live context keeps the last prompt's KV state (a call that extends it
        # only evaluates the new tokens), and up to ``cache_bytes`` of saved states let a call resume
        # from another conversation's prefix (agents that share a team preamble and tool list).
        self.prefix_cache = prefix_cache
        self.cache_bytes = cache_bytes
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.path = Path(path)
        self.n_ctx = n_ctx
        # None keeps llama.cpp's default (half the cores): its threads spin while they wait, so using
        # every core of a small shared board makes latency collapse when anything else runs.
        self.n_threads = n_threads
        self.seed = seed
        self._llm: Any = None
        self._formatter: Any = None
        self._is_end: Callable[[int], bool] = lambda token: True
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        """Load the GGUF now (blocking; the model pool calls it in a worker thread)."""
        with self._lock:
            self._load()

    def close(self) -> None:
        """Free the model's memory; a later call loads it again."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
            self._llm = self._formatter = None
            self._states.clear()

    async def request(self, req: ModelRequest) -> ModelResponse:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, req, None, cancel)
        finally:
            # If the caller was cancelled the thread runs on: tell it to stop at the next token.
            cancel.set()

    async def stream(self, req: ModelRequest) -> AsyncIterator[StreamDelta]:
        """Yield text as it is generated, then the full response.

        Plain and structured replies stream token by token. A reply to a request with tools is only
        known to be a tool call or a final answer once complete, so its content comes as one delta.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        emit = None if req.tools else on_text
        worker = asyncio.ensure_future(asyncio.to_thread(self._generate, req, emit, cancel))
        # Scheduled after every on_text callback of the thread, so the end marker comes last.
        worker.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (text := await queue.get()) is not None:
                yield StreamDelta(text=text)
            response = await worker
            if req.tools and response.message.content:
                yield StreamDelta(text=response.message.content)
            yield StreamDelta(response=response)
        finally:
            cancel.set()
            if not worker.done():
                worker.add_done_callback(_consume_result)

    # -- blocking part, run in a worker thread -------------------------------------------------------

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            import llama_cpp
            from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter
        except ImportError:
            raise UserError("llama-cpp-python is not installed; run `pip install 'edgecrew[local]'`") from None
        if not self.path.is_file():
            raise UserError(f"model '{self.name}': GGUF file {self.path} does not exist")
        ensure_safe_build(llama_cpp)  # a foreign or AMX build would kill the process, not raise
        _silence_llama_logs(llama_cpp)
        try:
            llm = (_lazy_grammar_llama(llama_cpp) if self.lazy_grammar else llama_cpp.Llama)(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                # Prompt evaluation would otherwise use every core, whatever n_threads says.
                n_threads_batch=self.n_threads,
                seed=self.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"model '{self.name}': llama.cpp could not load {self.path}: {exc}") from exc
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            # Templates come from the GGUF; ChatML is what most small instruct models without one expect.
            template=llm.metadata.get("tokenizer.chat_template") or CHATML_CHAT_TEMPLATE,
            eos_token=llm.detokenize([eos], special=True).decode() if eos >= 0 else "",
            bos_token=llm.detokenize([bos], special=True).decode() if bos >= 0 else "",
        )
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._is_end = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self._llm = llm
        return llm

    def _generate(self, req: ModelRequest, on_text: OnText | None, cancel: threading.Event) -> ModelResponse:
        schema = response_schema(req)
        with self._lock:
            if cancel.is_set():
                raise ModelError(f"model '{self.name}': call cancelled before it started")
            llm = self._load()
            grammar = None
            if schema is not None:
                _validator(json.dumps(schema), "the output schema or a tool's parameters")  # fail before generating
                # Strings without a length cap get one in the grammar (not in validation): a small model
                # that never closes a string would otherwise run to max_tokens and return broken JSON.
                capped = _grammar_schema(schema, req.max_tokens)
                grammar = grammar_for(json.dumps(capped)) if self.constrain else None
            prompt = self._prompt_tokens(req)
            room = self.n_ctx - len(prompt)
            if room <= 0:
                raise ModelError(
                    f"model '{self.name}': the prompt has {len(prompt)} tokens but the context holds "
                    f"{self.n_ctx}; shorten the conversation or raise n_ctx"
                )
            max_tokens = min(req.max_tokens, room)
            started = time.perf_counter()  # restoring a saved prefix counts towards time to first token
            cached = self._reuse_prefix(llm, prompt)
            first: float | None = None
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            parts: list[str] = []
            produced = 0
            llm.set_seed(self.seed)
            try:
                for token in llm.generate(
                    prompt,
                    temp=req.temperature,
                    top_k=_TOP_K,
                    top_p=_TOP_P,
                    min_p=_MIN_P,
                    repeat_penalty=_REPEAT_PENALTY,
                    grammar=grammar,
                ):
                    if self._is_end(token):
                        break
                    produced += 1
                    piece = decoder.decode(llm.detokenize([token]))
                    if piece:
                        first = time.perf_counter() - started if first is None else first
                        parts.append(piece)
                        if on_text is not None:
                            on_text(piece)
                    if produced >= max_tokens or cancel.is_set():
                        break
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"model '{self.name}': llama.cpp failed while generating: {exc}") from exc
            tail = decoder.decode(b"", final=True)
            if tail:
                parts.append(tail)
                if on_text is not None:
                    on_text(tail)
            latency = time.perf_counter() - started
        text = "".join(parts)
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=produced, cached_tokens=max(cached, 0))
        return ModelResponse(
            message=parse_reply(text, req, truncated=produced >= max_tokens),
            usage=usage,
            model=self.name,
            latency_s=latency,
            time_to_first_token_s=first,
        )

    def _reuse_prefix(self, llm: Any, prompt: list[int]) -> int:
        """Position the context on the longest known prefix of ``prompt``; returns its length."""
        if not self.prefix_cache:
            llm.reset()  # evaluate the whole prompt again (what reuse is measured against)
            return 0
        live = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        if llm.n_tokens - live >= 16:
            # The new prompt leaves the live conversation: keep its state, another call may resume it.
            # (Saving only on divergence spares the copy while one conversation just grows.)
            self._save_state(llm)
        best_key, best = None, live
        for key in self._states:
            shared = _common_prefix(list(key), prompt)
            if shared > best:
                best_key, best = key, shared
        if best_key is not None and best - live >= 16:  # loading a state costs a copy: worth it for 16+
            self._states.move_to_end(best_key)
            _restore(llm, self._states[best_key])
            live = best
        # llama.cpp re-evaluates at least the last prompt token to get fresh logits.
        return max(0, min(live, len(prompt) - 1))

    def _save_state(self, llm: Any) -> None:
        if not self.prefix_cache or self.cache_bytes <= 0 or llm.n_tokens == 0:
            return
        key = tuple(llm.input_ids[: llm.n_tokens].tolist())
        if any(k[: len(key)] == key for k in self._states):
            return  # a saved state already covers this sequence
        state = _snapshot(llm)
        for k in [k for k in self._states if key[: len(k)] == k]:
            del self._states[k]  # the new state extends these
        self._states[key] = state
        while self._states and sum(len(st.data) for st in self._states.values()) > self.cache_bytes:
            self._states.popitem(last=False)

    def _prompt_tokens(self, req: ModelRequest) -> list[int]:
        chat = [_to_chat(m) for m in _with_tool_instructions(req)]
        try:
            rendered = self._formatter(messages=chat)
        except Exception as exc:  # jinja2 errors, raise_exception() in templates
            raise ModelError(f"model '{self.name}': its chat template rejected the messages: {exc}") from exc
        # The template writes the BOS token itself when the model wants one.
        tokens: list[int] = self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
        return tokens


# -- request → schema → grammar, and reply → message ------------------------------------------------


def response_schema(req: ModelRequest) -> dict[str, Any] | None:
    """The JSON Schema the reply must satisfy: the output schema, or the tool-call envelope."""
    if not req.tools:
        return dict(req.output_schema) if req.output_schema is not None else None
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": _arguments_schema(t)},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in req.tools
    ]
    if req.tool_choice == "required":
        return {"anyOf": options}
    final = dict(req.output_schema) if req.output_schema is not None else {"type": "string"}
    options.append(
        {
            "type": "object",
            "properties": {"final": final},
            "required": ["final"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": options}


@lru_cache(maxsize=64)
def grammar_for(schema_json: str) -> Any:
    """The llama.cpp grammar for a JSON Schema (given as JSON text, so it can be cached)."""
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    try:
        gbnf = json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter signals unsupported schemas with assert and bare Exception
        raise UserError(
            f"this JSON Schema cannot be turned into a llama.cpp grammar ({exc or type(exc).__name__}); "
            "use type/properties/required/items/enum/const/anyOf/minItems/maxItems/maxLength/pattern: "
            f"{schema_json[:_SHOWN]}"
        ) from None
    return LlamaGrammar.from_string(gbnf.replace(_LOOSE_JSON_CHAR, _STRICT_JSON_CHAR), verbose=False)


# llama-cpp-python's converter lets string characters be raw control characters (a newline inside a
# string), which no JSON parser accepts; llama.cpp's own converter excludes them, and so do we.
_LOOSE_JSON_CHAR = r'[^"\\] | "\\" ('
_STRICT_JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" ('


def parse_reply(text: str, req: ModelRequest, *, truncated: bool = False) -> Message:
    """Turn the raw completion into a message: text, structured JSON text, or a tool call.

    Raises InvalidOutputError (a ModelError the agent loop answers with a retry) when a constrained
    reply does not parse or does not satisfy its schema.
    """
    if not req.tools and req.output_schema is None:
        return Message(role="assistant", content=text)
    data = _load_json(text, req.max_tokens if truncated else None)
    if not req.tools:
        _check(data, req.output_schema or {}, "the output schema", text)
        return Message(role="assistant", content=text)
    if isinstance(data, dict) and "tool" in data:
        tool = next((t for t in req.tools if t.name == data["tool"]), None)
        if tool is None:
            raise InvalidOutputError(f"model called unknown tool {data['tool']!r}: {text[:_SHOWN]!r}")
        arguments = data.get("arguments")
        if not isinstance(arguments, dict):
            raise InvalidOutputError(f"model called tool '{tool.name}' without an arguments object: {text[:_SHOWN]!r}")
        _check(arguments, _arguments_schema(tool), f"the arguments of tool '{tool.name}'", text)
        # Deterministic ids keep a recorded conversation byte-identical when it is replayed.
        call = ToolCall(id=f"call_{len(req.messages)}_0", name=tool.name, arguments=dict(arguments))
        return Message(role="assistant", tool_calls=(call,))
    if isinstance(data, dict) and "final" in data:
        final = data["final"]
        if req.output_schema is not None:
            _check(final, req.output_schema, "the output schema", text)
            return Message(role="assistant", content=json.dumps(final))
        return Message(role="assistant", content=final if isinstance(final, str) else json.dumps(final))
    raise InvalidOutputError(f"model reply is neither a tool call nor a final answer: {text[:_SHOWN]!r}")


def _load_json(text: str, cut_at: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if cut_at is not None:
            raise InvalidOutputError(
                f"model reply was cut off at max_tokens={cut_at} before its JSON was complete; raise "
                f"max_tokens or ask for a shorter answer (add maxItems/maxLength to the schema): "
                f"{text[:_SHOWN]!r}"
            ) from None
        raise InvalidOutputError(f"model returned malformed JSON ({exc.msg} at {exc.pos}): {text[:_SHOWN]!r}") from None


def _check(data: Any, schema: dict[str, Any], what: str, text: str) -> None:
    from jsonschema import exceptions

    error = exceptions.best_match(_validator(json.dumps(schema), what).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise InvalidOutputError(
            f"model reply does not satisfy {what} at {where}: {error.message}; reply: {text[:_SHOWN]!r}"
        )


@lru_cache(maxsize=64)
def _validator(schema_json: str, what: str) -> Any:
    from jsonschema import exceptions, validators

    schema = json.loads(schema_json)
    validator_class = validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise UserError(f"{what} is not a valid JSON Schema: {exc.message}") from None
    return validator_class(schema)


def _arguments_schema(tool: ToolDefinition) -> dict[str, Any]:
    return tool.parameters or {"type": "object"}


def _with_tool_instructions(req: ModelRequest) -> list[Message]:
    if not req.tools:
        return list(req.messages)
    # The grammar enforces the full schemas; the prompt only needs names, purposes and argument names,
    # and a short prompt is both faster and easier for a small model to follow.
    lines = ["You have these tools:"]
    lines += [
        f"- {t.name}: {t.description} Arguments: {json.dumps(_arguments_schema(t).get('properties', {}))}"
        for t in req.tools
    ]
    lines += [
        'To use a tool, reply with JSON: {"tool": "<tool name>", "arguments": {<arguments>}}.',
        'If no tool is needed, reply with JSON: {"final": <your answer>}.',
    ]
    instructions = "\n".join(lines)
    messages = list(req.messages)
    if messages and messages[0].role == "system":
        # Tools first: agents that share tools (and a team preamble) then share a prompt prefix, whose
        # KV state the prefix cache computes once.
        messages[0] = Message(role="system", content=instructions + "\n\n" + messages[0].content)
    else:
        messages.insert(0, Message(role="system", content=instructions))
    return messages


def _to_chat(message: Message) -> dict[str, str]:
    # Small models' chat templates rarely know tool roles: calls and results travel as plain text.
    if message.tool_calls:
        calls = [json.dumps({"tool": c.name, "arguments": c.arguments}) for c in message.tool_calls]
        return {"role": "assistant", "content": "\n".join(calls)}
    if message.role == "tool":
        return {"role": "user", "content": f"Result of tool {message.name}: {message.content}"}
    return {"role": message.role, "content": message.content}


# -- constrained sampling: the grammar checks the chosen token first -------------------------------


class _GrammarOnRejection:
    """A sampler that applies the grammar only when the token sampled without it breaks the grammar.

    llama-cpp-python puts the grammar in the sampler chain, where it filters every candidate in the
    vocabulary for every generated token: a pass over 49k tokens for SmolLM2 and 262k for Gemma 3,
    which costs more than the model's forward pass. llama.cpp's own sampler (``common_sampler``)
    samples without the grammar first, checks that one token against it, and only when the grammar
    rejects it samples again with the grammar over the whole vocabulary. With greedy decoding the
    result is the same token either way (the most likely token, if allowed, is also the most likely
    allowed one); most tokens a model picks under a JSON grammar are allowed, so most steps skip the
    filter. ``free`` and ``full`` are the same chain (repetition penalties first) without and with
    the grammar; both learn every generated token.
    """

    def __init__(self, llama_cpp: Any, free: Any, full: Any, window: int) -> None:
        self._c = llama_cpp
        self.free, self.full = free, full
        self._grammar = self._find(full, b"grammar")
        if self._grammar is None:
            raise ModelError("llama.cpp's sampler chain has no grammar sampler; cannot constrain output")
        self._penalties = self._find(free, b"penalties")
        self._history: deque[int] = deque(maxlen=window)  # what the penalty sampler looks back over
        self.rejected = 0  # tokens the grammar refused, sampled again over the whole vocabulary
        self._one = llama_cpp.llama_token_data()
        self._candidates = llama_cpp.llama_token_data_array()
        self._candidates_ref = ctypes.byref(self._candidates)

    def _find(self, chain: Any, name: bytes) -> Any:
        for i in range(self._c.llama_sampler_chain_n(chain.sampler)):
            sampler = self._c.llama_sampler_chain_get(chain.sampler, i)
            if self._c.llama_sampler_name(sampler) == name:
                return sampler
        return None

    def allowed(self, token: int) -> bool:
        """Whether the grammar, in its current state, accepts ``token`` next."""
        self._one.id, self._one.logit, self._one.p = token, 0.0, 0.0
        candidates = self._candidates  # samplers may move its data pointer: set every field again
        candidates.data, candidates.size = ctypes.pointer(self._one), 1
        candidates.selected, candidates.sorted = -1, False
        self._c.llama_sampler_apply(self._grammar, self._candidates_ref)
        return bool(self._one.logit != float("-inf"))

    def sample(self, ctx: Any, idx: int = -1) -> int:
        token = int(self.free.sample(ctx, idx))  # also tells the free chain's samplers the token
        if self.allowed(token):
            self.full.accept(token)
        else:
            self.rejected += 1
            token = int(self.full.sample(ctx, idx))  # grammar over the whole vocabulary; accepts
            if self._penalties is not None:
                # The free chain's penalties learnt the rejected token: give them the true history.
                self._c.llama_sampler_reset(self._penalties)
                for earlier in self._history:
                    self._c.llama_sampler_accept(self._penalties, earlier)
                self._c.llama_sampler_accept(self._penalties, token)
        self._history.append(token)
        return token

    def close(self) -> None:
        self.free.close()
        self.full.close()


@lru_cache(maxsize=1)
def _lazy_grammar_llama(llama_cpp: Any) -> Any:
    """``llama_cpp.Llama`` whose sampler applies a grammar only on rejection (``_GrammarOnRejection``)."""

    class Llama(llama_cpp.Llama):  # type: ignore[misc]
        def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
            if grammar is None:
                return super()._init_sampler(*args, **kwargs)
            free = super()._init_sampler(*args, **kwargs)
            full = super()._init_sampler(*args, grammar=grammar, **kwargs)
            # The penalty sampler looks back over the last ``last_n_tokens_size`` tokens.
            return _GrammarOnRejection(llama_cpp, free, full, self.last_n_tokens_size)

    return Llama


@dataclass(frozen=True)
class _Saved:
    """A KV snapshot: the token ids it covers and llama.cpp's state bytes (no Python-side logits)."""

    ids: Any
    data: bytes


def _snapshot(llm: Any) -> _Saved:
    import ctypes

    import llama_cpp

    size = llama_cpp.llama_state_get_size(llm._ctx.ctx)
    buffer = (ctypes.c_uint8 * int(size))()
    written = int(llama_cpp.llama_state_get_data(llm._ctx.ctx, buffer, size))
    return _Saved(ids=llm.input_ids[: llm.n_tokens].copy(), data=ctypes.string_at(buffer, written))


def _restore(llm: Any, saved: _Saved) -> None:
    import ctypes

    import llama_cpp

    size = len(saved.data)
    buffer = (ctypes.c_uint8 * size).from_buffer_copy(saved.data)
    if llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, size) != size:
        raise ModelError("llama.cpp could not restore a saved prompt state")
    n = len(saved.ids)
    llm.input_ids[:n] = saved.ids
    llm.n_tokens = n


def _grammar_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The schema the grammar enforces: tool arguments' free strings capped near the token budget
    (a runaway argument is the classic small-model failure), answers' strings more loosely."""
    answer_cap, argument_cap = max(24, 3 * max_tokens), max(24, max_tokens)
    if "anyOf" not in schema:
        return dict(_cap_strings(schema, answer_cap))
    options = [
        _cap_strings(option, argument_cap if "tool" in option.get("properties", {}) else answer_cap)
        for option in schema["anyOf"]
    ]
    return {**schema, "anyOf": options}


def _cap_strings(schema: Any, limit: int) -> Any:
    """A copy of ``schema`` whose free-form strings have ``maxLength`` (at most ``limit``)."""
    if isinstance(schema, list):
        return [_cap_strings(s, limit) for s in schema]
    if not isinstance(schema, dict):
        return schema
    capped = {
        k: _cap_strings(v, limit) if k not in ("enum", "const", "default", "examples") else v for k, v in schema.items()
    }
    free = not any(k in schema for k in ("enum", "const", "pattern", "format"))
    if schema.get("type") == "string" and free:
        capped["maxLength"] = min(int(schema.get("maxLength", limit)), limit)
    return capped


_LOG_CALLBACK: Any = None


def _silence_llama_logs(llama_cpp: Any) -> None:
    """llama.cpp writes notes (cache layouts, warnings) straight to stderr; errors reach us as exceptions."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _consume_result(task: asyncio.Future[Any]) -> None:
    # The stream was abandoned: retrieve the outcome so asyncio does not log it as never retrieved.
    if not task.cancelled():
        task.exception()
