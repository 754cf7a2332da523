"""llama.cpp state below the adapter: sampling settings, the constrained sampler, and KV snapshots.

Concerns of the embedded model that live inside llama-cpp-python's objects rather than in a chat
request: with which parameters a reply is sampled (:func:`sampling_for`: the request, then the
alias's settings, then the model family's recommended :class:`ModelDefaults`), how a token is
sampled under a grammar (:class:`GrammarOnRejection`, llama.cpp's own "check the chosen token
first" strategy) and which prompt prefix's KV state the context holds (:class:`PrefixCache`). The
one design decision: all of it works on the ``Llama`` object the adapter already holds and locks;
nothing here owns a model or a thread, so the adapter stays the only place that orders calls.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any, Literal

from edgecrew.errors import ModelError
from edgecrew.models.llamacpp_grammar import GEMMA3_CHAT_TEMPLATE

# -- sampling: the request, then the alias's settings, then the model's recommended defaults --------

SystemPrompt = Literal["system", "user"]


@dataclass(frozen=True)
class Sampling:
    """The sampling parameters of one reply (temperature 0: greedy; the penalty applies either way)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float


@dataclass(frozen=True)
class SamplingOverride:
    """An alias's sampling settings (``sampling:`` in edgecrew.yaml); each one left None keeps the model's.

    ``temperature`` is for plain-text replies, ``json_temperature`` for grammar-constrained ones (tool
    calls and structured output); the other parameters apply to both.
    """

    temperature: float | None = None
    json_temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None


@dataclass(frozen=True)
class ModelDefaults:
    """How a family of models is run unless its alias or a request says otherwise."""

    family: str
    sampling: Sampling  # plain-text replies: what the model card recommends
    # Grammar-constrained replies: greedy for both built-ins, measured better than their sampled
    # defaults on bench/tool_calls.py (see the README's models section).
    json_temperature: float
    # "user": the template has no system role; the system prompt opens the first user turn, and turns
    # of one role in a row are joined, since such templates expect user and model to alternate.
    system_prompt: SystemPrompt
    # Ends a reply besides the GGUF's end-of-generation tokens (<|im_end|>, <end_of_turn>...).
    stop: tuple[str, ...]
    chat_template: str | None = None  # used when the GGUF carries none (else ChatML)


# llama-cpp-python's chat-completion sampling (temperature aside): what every model ran with before
# families had defaults of their own, and what a GGUF of no known family still runs with.
_TOP_K, _TOP_P, _MIN_P, _REPEAT_PENALTY = 40, 0.95, 0.05, 1.1

GENERIC = ModelDefaults(
    family="generic",
    sampling=Sampling(temperature=0.0, top_k=_TOP_K, top_p=_TOP_P, min_p=_MIN_P, repeat_penalty=_REPEAT_PENALTY),
    json_temperature=0.0,
    system_prompt="system",
    stop=(),
)
# SmolLM2-Instruct's model card samples with temperature 0.2, top_p 0.9 and says nothing of the rest.
SMOLLM2 = replace(
    GENERIC,
    family="smollm2",
    sampling=replace(GENERIC.sampling, temperature=0.2, top_p=0.9),
    stop=("<|im_start|>",),  # a new ChatML turn: <|im_end|> was skipped
)
# Gemma 3's generation_config: top_k 64, top_p 0.95 at temperature 1.0, no min_p, no repetition penalty.
GEMMA3 = ModelDefaults(
    family="gemma3",
    sampling=Sampling(temperature=1.0, top_k=64, top_p=0.95, min_p=0.0, repeat_penalty=1.0),
    json_temperature=0.0,
    system_prompt="user",
    stop=("<start_of_turn>",),
    chat_template=GEMMA3_CHAT_TEMPLATE,
)


def defaults_for(metadata: Mapping[str, str]) -> ModelDefaults:
    """The defaults of the model family a GGUF belongs to, read from its metadata (GENERIC if unknown)."""
    if metadata.get("general.architecture", "").startswith("gemma3"):
        return GEMMA3
    names = " ".join(metadata.get(key, "") for key in ("general.basename", "general.name")).lower()
    if "smollm2" in names:
        return SMOLLM2
    return GENERIC


def sampling_for(
    defaults: ModelDefaults, override: SamplingOverride, requested: float | None, *, constrained: bool
) -> Sampling:
    """The sampling of one reply: what the request sets, else the alias's settings, else the model's.

    ``requested`` is the request's own temperature (None: left to the model); ``constrained`` says
    the reply is held to a grammar (tool calls, structured output), which takes ``json_temperature``.
    """
    own = {f.name: getattr(override, f.name) for f in fields(Sampling) if getattr(override, f.name) is not None}
    sampling = replace(defaults.sampling, **own)
    if requested is not None:
        return replace(sampling, temperature=requested)
    if constrained:
        chosen = override.json_temperature
        return replace(sampling, temperature=defaults.json_temperature if chosen is None else chosen)
    return sampling


# -- constrained sampling: the grammar checks the chosen token first -------------------------------


class GrammarOnRejection:
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

    ``n_vocab`` set means the chain is plain greedy (temperature 0, no penalties): the logits are then
    the whole story, so a rejected token is replaced by the best of the top ``_SHORTLIST`` logits
    the grammar allows, checked one at a time in the order greedy would rank them (highest logit,
    then lowest id), which is the token the grammar over the whole vocabulary would pick, at a
    fraction of its cost (bench/README.md, team_speed); only when none of them is allowed does the
    whole vocabulary get filtered.
    """

    def __init__(self, llama_cpp: Any, free: Any, full: Any, window: int, n_vocab: int | None = None) -> None:
        self._c = llama_cpp
        self.free, self.full = free, full
        self._n_vocab = n_vocab
        self._grammar = self._find(full, b"grammar")
        if self._grammar is None:
            raise ModelError("llama.cpp's sampler chain has no grammar sampler; cannot constrain output")
        self._penalties = self._find(free, b"penalties")
        self._history: deque[int] = deque(maxlen=window)  # what the penalty sampler looks back over
        self.rejected = 0  # tokens the grammar refused, sampled again (shortlisted: from the top logits)
        self.shortlisted = 0
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
            best = self._best_allowed(ctx, idx) if self._n_vocab else None
            if best is None:
                token = int(self.full.sample(ctx, idx))  # grammar over the whole vocabulary; accepts
            else:
                token = best
                self.shortlisted += 1
                self.full.accept(token)
            if self._penalties is not None:
                # The free chain's penalties learnt the rejected token: give them the true history.
                self._c.llama_sampler_reset(self._penalties)
                for earlier in self._history:
                    self._c.llama_sampler_accept(self._penalties, earlier)
                self._c.llama_sampler_accept(self._penalties, token)
        self._history.append(token)
        return token

    def _best_allowed(self, ctx: Any, idx: int) -> int | None:
        """Greedy's pick among the tokens the grammar allows, if one is among the top logits."""
        import numpy as np

        n = int(self._n_vocab or 0)
        pointer = self._c.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(n,))
        k = min(_SHORTLIST, n)
        top = np.argpartition(-logits, k - 1)[:k]
        # Greedy keeps the first of equal logits: rank by logit, then by id.
        for token in top[np.lexsort((top, -logits[top]))]:
            if self.allowed(int(token)):
                return int(token)
        return None

    def close(self) -> None:
        self.free.close()
        self.full.close()


_SHORTLIST = 64  # logits checked one by one after a rejection before the whole vocabulary is filtered


@lru_cache(maxsize=1)
def lazy_grammar_llama(llama_cpp: Any) -> Any:
    """``llama_cpp.Llama`` whose sampler applies a grammar only on rejection (``GrammarOnRejection``)."""

    class Llama(llama_cpp.Llama):  # type: ignore[misc]
        def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
            if grammar is None:
                return super()._init_sampler(*args, **kwargs)
            free = super()._init_sampler(*args, **kwargs)
            full = super()._init_sampler(*args, grammar=grammar, **kwargs)
            # Plain greedy (generate() passes every setting by name): the logits alone decide the token.
            greedy = not args and kwargs.get("logits_processor") is None and kwargs.get("temp") == 0.0
            greedy = greedy and kwargs.get("repeat_penalty") == 1.0 and kwargs.get("mirostat_mode", 0) == 0
            greedy = greedy and not kwargs.get("frequency_penalty") and not kwargs.get("presence_penalty")
            # The penalty sampler looks back over the last ``last_n_tokens_size`` tokens.
            return GrammarOnRejection(
                llama_cpp, free, full, self.last_n_tokens_size, n_vocab=self._n_vocab if greedy else None
            )

    return Llama


# -- KV state: snapshots of a prompt prefix, and the cache that reuses them --------------------------


@dataclass(frozen=True)
class Saved:
    """A KV snapshot: the token ids it covers and llama.cpp's state bytes (no Python-side logits)."""

    ids: Any
    data: bytes


def snapshot(llm: Any) -> Saved:
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llm._ctx.ctx)
    buffer = (ctypes.c_uint8 * int(size))()
    written = int(llama_cpp.llama_state_get_data(llm._ctx.ctx, buffer, size))
    return Saved(ids=llm.input_ids[: llm.n_tokens].copy(), data=ctypes.string_at(buffer, written))


def restore(llm: Any, saved: Saved) -> None:
    import llama_cpp

    size = len(saved.data)
    buffer = (ctypes.c_uint8 * size).from_buffer_copy(saved.data)
    if llama_cpp.llama_state_set_data(llm._ctx.ctx, buffer, size) != size:
        raise ModelError("llama.cpp could not restore a saved prompt state")
    n = len(saved.ids)
    llm.input_ids[:n] = saved.ids
    llm.n_tokens = n


class PrefixCache:
    """KV states saved by the token ids they cover, at most ``cache_bytes``, least recently used dropped first.

    The live context keeps the last prompt's KV state (a call that extends it only evaluates the new
    tokens); saved states let a call resume from another conversation's prefix (agents that share a
    team preamble and tool list).
    """

    def __init__(self, *, enabled: bool = True, cache_bytes: int = 256 * 2**20) -> None:
        self.enabled = enabled
        self.cache_bytes = cache_bytes
        self.states: OrderedDict[tuple[int, ...], Saved] = OrderedDict()

    def reuse(self, llm: Any, prompt: list[int], save: Callable[[Any], None] | None = None) -> int:
        """Position the context on the longest known prefix of ``prompt``; returns its length.

        ``save`` keeps the live state when the prompt leaves it (default: :meth:`save`).
        """
        if not self.enabled:
            llm.reset()  # evaluate the whole prompt again (what reuse is measured against)
            return 0
        live = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        if llm.n_tokens - live >= 16:
            # The new prompt leaves the live conversation: keep its state, another call may resume it.
            # (Saving only on divergence spares the copy while one conversation just grows.)
            (save or self.save)(llm)
        best_key, best = None, live
        for key in self.states:
            shared = common_prefix(list(key), prompt)
            if shared > best:
                best_key, best = key, shared
        if best_key is not None and best - live >= 16:  # loading a state costs a copy: worth it for 16+
            self.states.move_to_end(best_key)
            restore(llm, self.states[best_key])
            live = best
        # llama.cpp re-evaluates at least the last prompt token to get fresh logits.
        return max(0, min(live, len(prompt) - 1))

    def save(self, llm: Any) -> None:
        if not self.enabled or self.cache_bytes <= 0 or llm.n_tokens == 0:
            return
        key = tuple(llm.input_ids[: llm.n_tokens].tolist())
        if any(k[: len(key)] == key for k in self.states):
            return  # a saved state already covers this sequence
        state = snapshot(llm)
        for k in [k for k in self.states if key[: len(k)] == k]:
            del self.states[k]  # the new state extends these
        self.states[key] = state
        while self.states and sum(len(st.data) for st in self.states.values()) > self.cache_bytes:
            self.states.popitem(last=False)

    def clear(self) -> None:
        self.states.clear()


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
