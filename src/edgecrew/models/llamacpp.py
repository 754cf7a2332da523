"""llama.cpp adapter: GGUF models in-process through llama-cpp-python.

We drive ``Llama.generate`` ourselves instead of ``create_chat_completion`` because the latter
silently falls back to "any JSON" when a schema cannot be turned into a grammar, reports no usage
while streaming, and cannot be stopped once started. The one design decision: the Llama object is not
thread-safe, so this adapter owns it alone; calls are serialized by a lock and run in a worker
thread, and the helpers it calls (the grammar and replies in :mod:`~edgecrew.models.llamacpp_grammar`,
the sampler and KV state in :mod:`~edgecrew.models.llamacpp_state`) hold no model of their own.

Each reply is sampled as its request says, else as its alias's settings say, else as the model's
family recommends (:func:`~edgecrew.models.llamacpp_state.sampling_for`; the family is read from the
GGUF's metadata when it loads), and the family decides how the chat template gets the system prompt.
A constrained reply (a tool call, structured output) has no repeat penalty unless its alias sets one:
it copies values from the prompt, which a penalty on recent tokens garbles.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import json
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgecrew.domain.messages import ModelRequest, ModelResponse, StreamDelta, Usage
from edgecrew.domain.stops import TextStops
from edgecrew.errors import ModelError, UserError
from edgecrew.models.llamabuild import ensure_safe_build
from edgecrew.models.llamacpp_grammar import (
    answers_after_calls,
    grammar_for,
    grammar_schema,
    parse_reply,
    response_schema,
    to_chat,
    with_system_in_user_turn,
    with_tool_instructions,
)
from edgecrew.models.llamacpp_state import (
    GENERIC,
    ModelDefaults,
    PrefixCache,
    Sampling,
    SamplingOverride,
    Saved,
    SystemPrompt,
    common_prefix,
    defaults_for,
    lazy_grammar_llama,
    sampling_for,
)
from edgecrew.models.replies import response_of, validator

__all__ = ["LlamaCppModel", "SamplingOverride", "grammar_for", "parse_reply", "response_schema"]

# bench/inference.py samples its anchor with these: the sampling of a GGUF of no known family.
_GENERIC = GENERIC.sampling
_TOP_K, _TOP_P, _MIN_P, _REPEAT_PENALTY = _GENERIC.top_k, _GENERIC.top_p, _GENERIC.min_p, _GENERIC.repeat_penalty
_common_prefix = common_prefix  # bench/prefix_reuse.py imports it from here

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
        sampling: SamplingOverride | None = None,
        stop: Sequence[str] | None = None,
        system_prompt: SystemPrompt | None = None,
    ) -> None:
        self.name = name
        # The alias's own settings; what they leave out comes from the model's family once it loads.
        self.sampling = sampling or SamplingOverride()
        self.stop = tuple(stop) if stop is not None else None
        self.system_prompt = system_prompt
        # constrain=False drops the grammar (replies are still validated): the baseline that shows
        # what constrained decoding buys a small model.
        self.constrain = constrain
        # lazy_grammar: check the grammar against the token the model picks, and filter the whole
        # vocabulary only when it rejects that token (see GrammarOnRejection); False filters the
        # whole vocabulary for every token, as llama-cpp-python does.
        self.lazy_grammar = lazy_grammar
        # KV prefix reuse (see PrefixCache): prefix_cache=False evaluates every prompt whole.
        self._prefixes = PrefixCache(enabled=prefix_cache, cache_bytes=cache_bytes)
        self.path = Path(path)
        self.n_ctx = n_ctx
        # None: half the CPUs this process may use (see default_threads), for generation and prompt
        # evaluation alike: llama.cpp's threads spin while they wait, so using every core of a small
        # shared board makes latency collapse when anything else runs.
        self.n_threads = n_threads
        self.cpu_threads = 0  # the threads a call keeps busy, known once loaded
        self.seed = seed
        self._llm: Any = None
        self._formatter: Any = None
        self._defaults: ModelDefaults | None = None
        self._is_end: Callable[[int], bool] = lambda token: True
        self._text_stops: tuple[str, ...] = ()
        self._lock = threading.Lock()

    @property
    def prefix_cache(self) -> bool:
        return self._prefixes.enabled

    @property
    def cache_bytes(self) -> int:
        return self._prefixes.cache_bytes

    @property
    def _states(self) -> OrderedDict[tuple[int, ...], Saved]:
        """The saved KV states (bench/prefix_reuse.py reads their sizes)."""
        return self._prefixes.states

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def defaults(self) -> ModelDefaults | None:
        """The recommended settings of the loaded model's family (None until it loads)."""
        return self._defaults

    def sampling_of(self, req: ModelRequest) -> Sampling:
        """How the reply to ``req`` is sampled (the model must be loaded: its family decides the rest)."""
        if self._defaults is None:
            raise ModelError(f"model '{self.name}' is not loaded; its family's defaults are not known yet")
        # An answer after tool calls is held to {"final": ...} only to keep it from being one more call:
        # a plain one is text all the same, sampled as text (its family's temperature and repeat penalty).
        plain = answers_after_calls(req) and req.output_schema is None
        constrained = response_schema(req) is not None and not plain
        sampling = sampling_for(self._defaults, self.sampling, req.requested_temperature, constrained=constrained)
        if constrained and self.sampling.repeat_penalty is None:
            # A tool call copies values from the request, and llama.cpp's repeat penalty looks back 64
            # tokens, the prompt's included: SmolLM2 wrote $20,000 as 2000 and 100 trees as 10 under
            # the family's 1.1 (bench/bfcl.py, README). An alias that sets repeat_penalty keeps it.
            sampling = replace(sampling, repeat_penalty=1.0)
        return sampling

    def load(self) -> None:
        """Load the GGUF now (blocking; the model pool calls it in a worker thread)."""
        with self._lock:
            self._load()

    def footprint_bytes(self) -> int:
        """The loaded weights' size as llama.cpp counts it (0 before a load): the pool's floor for the
        footprint it measures at load (the KV cache and buffers come on top)."""
        with self._lock:
            if self._llm is None:
                return 0
            import llama_cpp

            return int(llama_cpp.llama_model_size(self._llm.model))

    def close(self) -> None:
        """Free the model's memory; a later call loads it again."""
        with self._lock:
            if self._llm is not None:
                self._llm.close()
            self._llm = self._formatter = self._defaults = None
            self._prefixes.clear()

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
        known to be a tool call or a final answer once complete, so its content comes as one delta, as
        does a final answer held to its envelope after tool calls (``answers_after_calls``).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        enveloped = bool(req.tools) or answers_after_calls(req)
        emit = None if enveloped else on_text
        worker = asyncio.ensure_future(asyncio.to_thread(self._generate, req, emit, cancel))
        # Scheduled after every on_text callback of the thread, so the end marker comes last.
        worker.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (text := await queue.get()) is not None:
                yield StreamDelta(text=text)
            response = await worker
            if enveloped and response.message.content:
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
        threads = self.n_threads or default_threads(machine_cpus())
        try:
            llm = (lazy_grammar_llama(llama_cpp) if self.lazy_grammar else llama_cpp.Llama)(
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=threads,
                # Prompt evaluation would otherwise use every core, whatever n_threads says.
                n_threads_batch=threads,
                seed=self.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"model '{self.name}': llama.cpp could not load {self.path}: {exc}") from exc
        defaults = defaults_for(llm.metadata)
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            # The GGUF's template, else its family's; ChatML is what most small instruct models expect.
            template=llm.metadata.get("tokenizer.chat_template") or defaults.chat_template or CHATML_CHAT_TEMPLATE,
            eos_token=llm.detokenize([eos], special=True).decode() if eos >= 0 else "",
            bos_token=llm.detokenize([bos], special=True).decode() if bos >= 0 else "",
        )
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        stop_tokens, self._text_stops = _split_stops(llm, defaults.stop if self.stop is None else self.stop)
        self._is_end = lambda token: token in stop_tokens or bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self._defaults = defaults
        self._llm = llm
        self.cpu_threads = threads  # the pool counts their cores as busy while a call runs
        return llm

    def _generate(self, req: ModelRequest, on_text: OnText | None, cancel: threading.Event) -> ModelResponse:
        schema = response_schema(req)
        with self._lock:
            if cancel.is_set():
                raise ModelError(f"model '{self.name}': call cancelled before it started")
            llm = self._load()
            grammar = None
            if schema is not None:
                validator(schema, "the output schema or a tool's parameters")  # fail before generating
                # Strings without a length cap get one in the grammar (not in validation): a small model
                # that never closes a string would otherwise run to max_tokens and return broken JSON.
                capped = grammar_schema(schema, req.max_tokens)
                grammar = grammar_for(json.dumps(capped)) if self.constrain else None
            prompt = self._prompt_tokens(req)
            room = self.n_ctx - len(prompt)
            if room <= 0:
                raise ModelError(
                    f"model '{self.name}': the prompt has {len(prompt)} tokens but the context holds "
                    f"{self.n_ctx}; shorten the conversation or raise n_ctx"
                )
            max_tokens = min(req.max_tokens, room)
            sampling = self.sampling_of(req)
            # Text stops (the alias's, then the request's) only end plain replies: cutting a constrained
            # one would leave broken JSON.
            stops = TextStops((*self._text_stops, *req.stop) if schema is None else ())
            started = time.perf_counter()  # restoring a saved prefix counts towards time to first token
            cached = self._reuse_prefix(llm, prompt)
            first: float | None = None
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            parts: list[str] = []
            produced = 0

            def emit(text: str) -> None:
                if text:
                    parts.append(text)
                    if on_text is not None:
                        on_text(text)

            llm.set_seed(self.seed)  # the same request samples the same reply...
            try:
                if cached < len(prompt) - 1:
                    # ...since the last prompt token is always evaluated alone, as when the prompt comes
                    # again and the cache holds the rest: its logits do not depend on what was cached.
                    llm.n_tokens = cached
                    llm.eval(prompt[cached:-1])
                for token in llm.generate(
                    prompt,
                    temp=sampling.temperature,
                    top_k=sampling.top_k,
                    top_p=sampling.top_p,
                    min_p=sampling.min_p,
                    repeat_penalty=sampling.repeat_penalty,
                    grammar=grammar,
                ):
                    if self._is_end(token):
                        break
                    produced += 1
                    piece = decoder.decode(llm.detokenize([token]))
                    if piece:
                        first = time.perf_counter() - started if first is None else first
                        emit(stops.feed(piece))
                    if stops.stopped or produced >= max_tokens or cancel.is_set():
                        break
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"model '{self.name}': llama.cpp failed while generating: {exc}") from exc
            if not stops.stopped:
                emit(stops.feed(decoder.decode(b"", final=True)) + stops.flush())
            latency = time.perf_counter() - started
        text = "".join(parts)
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=produced, cached_tokens=max(cached, 0))
        return response_of(
            lambda: parse_reply(text, req, truncated=produced >= max_tokens, who=f"model '{self.name}'"),
            text,
            usage=usage,
            model=self.name,
            latency_s=latency,
            time_to_first_token_s=first,
        )

    # bench/prefix_reuse.py times these two by wrapping them on the instance.
    def _reuse_prefix(self, llm: Any, prompt: list[int]) -> int:
        return self._prefixes.reuse(llm, prompt, save=self._save_state)

    def _save_state(self, llm: Any) -> None:
        self._prefixes.save(llm)

    def _prompt_tokens(self, req: ModelRequest) -> list[int]:
        chat = [to_chat(m) for m in with_tool_instructions(req)]
        placement = self.system_prompt or (self._defaults.system_prompt if self._defaults else "system")
        if placement == "user":
            chat = with_system_in_user_turn(chat)
        try:
            rendered = self._formatter(messages=chat)
        except Exception as exc:  # jinja2 errors, raise_exception() in templates
            raise ModelError(f"model '{self.name}': its chat template rejected the messages: {exc}") from exc
        # The template writes the BOS token itself when the model wants one.
        tokens: list[int] = self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)
        return tokens


def _split_stops(llm: Any, stops: Sequence[str]) -> tuple[frozenset[int], tuple[str, ...]]:
    """(token ids, texts): a stop that is one special token (``<start_of_turn>``) is matched by id, since
    special tokens are detokenized to nothing; any other is matched in the reply's text."""
    tokens, texts = set(), []
    for stop in stops:
        special = llm.tokenize(stop.encode("utf-8"), add_bos=False, special=True)
        if len(special) == 1 and special != llm.tokenize(stop.encode("utf-8"), add_bos=False, special=False):
            tokens.add(int(special[0]))
        else:
            texts.append(stop)
    return frozenset(tokens), tuple(texts)


def default_threads(cpus: int) -> int:
    """llama.cpp threads when an alias sets none: half the CPUs the process may use, at least one.

    Half, as llama-cpp-python chooses, but of the CPUs this process may run on rather than of the host's:
    in a container or under ``taskset`` the host may have 64 cores and the process 2. Prompt evaluation
    gets the same count (llama-cpp-python would give it every core of the host). bench/team_speed.py
    measures a team's calls against raw llama-cpp-python at each thread count (bench/README.md).
    """
    return max(1, cpus // 2)


def usable_cpus(affinity: int | None, cpu_max: str | None, host: int | None) -> int:
    """The CPUs a process may use: its affinity mask (else the host's count), capped by a cgroup v2 CPU
    quota (``cpu.max``: "200000 100000" is 2 CPUs, "max 100000" none). :func:`machine_cpus` reads the facts."""
    cpus = affinity or host or 1
    quota, _, period = (cpu_max or "").partition(" ")
    if quota.isdigit() and period.strip().isdigit() and int(period) > 0:
        cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    return max(1, cpus)


def machine_cpus() -> int:
    """:func:`usable_cpus` of this process (``os.sched_getaffinity``, ``/sys/fs/cgroup/cpu.max``, ``os.cpu_count``)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        cpu_max: str | None = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        cpu_max = None
    return usable_cpus(affinity, cpu_max, os.cpu_count())


_LOG_CALLBACK: Any = None


def _silence_llama_logs(llama_cpp: Any) -> None:
    """llama.cpp writes notes (cache layouts, warnings) straight to stderr; errors reach us as exceptions.

    The log callback keeps it quiet, so llama-cpp-python's own silencing is switched off: with
    ``verbose=False`` it points the whole process's stdout and stderr at /dev/null while a model loads,
    and every other thread's output in that window was lost (`edgecrew run` printed no "create" or
    "coder started" line when the coder's model loaded as the task was filed)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    for name in ("llama_cpp.llama", "llama_cpp._internals", "llama_cpp.llama_chat_format"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "suppress_stdout_stderr"):
            setattr(module, "suppress_stdout_stderr", _KeepOutput)  # noqa: B010 (a module mypy cannot see)


class _KeepOutput:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``: leaves the process's output alone."""

    def __init__(self, disable: bool = True) -> None:
        self.disable = disable

    def __enter__(self) -> _KeepOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _consume_result(task: asyncio.Future[Any]) -> None:
    # The stream was abandoned: retrieve the outcome so asyncio does not log it as never retrieved.
    if not task.cancelled():
        task.exception()
