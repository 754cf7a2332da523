"""ToolSpec, @tool, name normalization and the files tools' workspace confinement."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecrew.errors import NotFoundError, ToolError, UserError
from edgecrew.tools.base import ToolContext, ToolRegistry, spec_from_function, tool
from edgecrew.tools.builtins import register_builtins


def test_tool_decorator_derives_schema_from_type_hints() -> None:
    registry = ToolRegistry()

    @tool(registry=registry, aliases=("wc",))
    def word_count(text: str, minimum: int = 0) -> int:
        """Count words.

        More detail that is not part of the description."""
        return len(text.split())

    spec = registry.get("Word-Count")
    assert spec.name == "word_count" and spec.description == "Count words."
    assert spec.input_schema["properties"] == {"text": {"type": "string"}, "minimum": {"type": "integer", "default": 0}}
    assert spec.input_schema["required"] == ["text"]
    assert registry.get("WC") is spec
    assert registry.canonical("word.count") == "word_count"
    with pytest.raises(NotFoundError):
        registry.get("nope")


async def test_arguments_are_validated_before_the_call(tmp_path: Path) -> None:
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    spec = spec_from_function(add)
    ctx = ToolContext("r", "agent", tmp_path)
    assert await spec.call({"a": 1, "b": 2}, ctx) == 3
    with pytest.raises(ToolError, match="invalid arguments for add: b: Field required"):
        await spec.call({"a": 1}, ctx)
    with pytest.raises(ToolError, match="c: unknown field"):
        await spec.call({"a": 1, "b": 2, "c": 3}, ctx)


def test_nan_and_infinity_are_refused_where_they_are() -> None:
    """JSON has neither (a stored NaN comes back null): refused wherever they sit, schema or not."""

    def put(value: object, nested: dict[str, list[float]]) -> None:
        """Put."""

    spec = spec_from_function(put)
    with pytest.raises(ToolError, match="invalid arguments for put: value: must be a finite number"):
        spec.validate_arguments({"value": float("nan"), "nested": {}})
    with pytest.raises(ToolError, match=r"nested\.xs\.1: must be a finite number"):
        spec.validate_arguments({"value": 1, "nested": {"xs": [1.0, float("inf")]}})
    assert spec.validate_arguments({"value": 1e308, "nested": {"xs": [-1.5]}}) == {
        "value": 1e308,
        "nested": {"xs": [-1.5]},
    }


def test_duplicate_names_are_refused() -> None:
    registry = ToolRegistry()
    register_builtins(registry)

    def files_read(path: str) -> str:
        """Shadow."""
        return path

    with pytest.raises(UserError, match="already used"):
        registry.register(spec_from_function(files_read, name="FILES_READ"))


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "sub/../../x", "link/secret"])
async def test_files_tools_refuse_paths_outside_the_workspace(tmp_path: Path, path: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "secret").mkdir()
    (workspace / "link").symlink_to(tmp_path / "secret")
    registry = ToolRegistry()
    register_builtins(registry)
    ctx = ToolContext("r", "a", workspace)
    with pytest.raises(ToolError, match="outside the workspace"):
        await registry.get("files.write").call({"path": path, "content": "x"}, ctx)
    with pytest.raises(ToolError, match="outside the workspace"):
        await registry.get("files.read").call({"path": path}, ctx)


async def test_files_round_trip_inside_the_workspace(tmp_path: Path) -> None:
    registry = ToolRegistry()
    register_builtins(registry)
    ctx = ToolContext("r", "a", tmp_path)
    await registry.get("files.write").call({"path": "notes/a.md", "content": "hello"}, ctx)
    assert await registry.get("files.read").call({"path": "notes/a.md"}, ctx) == "hello"
    assert await registry.get("files.list").call({}, ctx) == ["notes/a.md"]


async def test_reading_a_file_past_the_limit_says_it_is_cut(tmp_path: Path) -> None:
    """files.read returned the first 64,000 bytes of a bigger file as if they were all of it."""
    from edgecrew.tools.builtins.files import MAX_READ_BYTES

    registry = ToolRegistry()
    register_builtins(registry)
    ctx = ToolContext("r", "a", tmp_path)
    (tmp_path / "whole.txt").write_text("a" * MAX_READ_BYTES)
    assert await registry.get("files.read").call({"path": "whole.txt"}, ctx) == "a" * MAX_READ_BYTES
    big = "a" * (MAX_READ_BYTES - 1) + "é" + "tail" * 100
    (tmp_path / "big.txt").write_text(big)
    read = await registry.get("files.read").call({"path": "big.txt"}, ctx)
    size = len(big.encode())
    assert (
        read
        == "a" * (MAX_READ_BYTES - 1) + f"\n[cut: 'big.txt' has {size} bytes; these are the first {MAX_READ_BYTES}]"
    )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
async def test_a_file_with_a_unicode_byte_order_mark_is_read_in_its_encoding(tmp_path: Path, encoding: str) -> None:
    # Notepad's "Unicode" okr.json is UTF-16: read as UTF-8 it was noise the crew called "not valid JSON".
    import codecs
    import json

    registry = ToolRegistry()
    register_builtins(registry)
    boms = {"utf-16-be": codecs.BOM_UTF16_BE}  # Python writes the others' marks itself
    text = '{"objectives": ["Ship the dashboard — v2"]}'
    (tmp_path / "okr.json").write_bytes(boms.get(encoding, b"") + text.encode(encoding))
    read = await registry.get("files.read").call({"path": "okr.json"}, ToolContext("r", "a", tmp_path))
    assert read == text and json.loads(read)["objectives"] == ["Ship the dashboard — v2"]


@pytest.mark.parametrize("missing_ok", [False, True])
async def test_reading_a_folder_says_it_is_a_folder(tmp_path: Path, missing_ok: bool) -> None:
    """A folder where a file was expected (project/okr.json made a folder) was 'no such file'."""
    registry = ToolRegistry()
    register_builtins(registry)
    (tmp_path / "okr.json").mkdir()
    with pytest.raises(ToolError, match=r"'okr.json' is a folder, not a file; files.list lists what is in it"):
        await registry.get("files.read").call(
            {"path": "okr.json", "missing_ok": missing_ok}, ToolContext("r", "a", tmp_path)
        )


async def test_scheduler_can_run_asks_the_pool_and_the_machine(tmp_path: Path) -> None:
    from edgecrew.models.pool import ModelPool, PoolModelSpec

    registry = ToolRegistry()
    register_builtins(registry)
    tool_spec = registry.get("scheduler.can_run")
    plain = ToolContext("r", "a", tmp_path)
    small = await tool_spec.call({"memory_mb": 1, "cpu_cores": 0}, plain)
    assert small["fits"] is True and small["free_memory_mb"] > 1
    huge = await tool_spec.call({"memory_mb": 10**9}, plain)
    assert huge["fits"] is False and "needs" in huge["reason"]

    async def load(alias: str) -> object:
        return object()

    pool = ModelPool(load, specs=lambda a: PoolModelSpec(a, memory_bytes=60 * 2**20), budget_bytes=100 * 2**20)  # type: ignore[arg-type]
    async with pool.use("m"):
        held = await tool_spec.call({"memory_mb": 50, "cpu_cores": 0}, ToolContext("r", "a", tmp_path, pool=pool))
    assert held["fits"] is False and "held by models" in held["reason"]
    with pytest.raises(ToolError, match="must not be negative"):
        await tool_spec.call({"memory_mb": -1}, plain)


def test_a_function_tools_schema_is_built_on_first_use_and_rewrites_apply_then() -> None:
    """Registering a tool reads no type hints (every command registers ~90 built-ins it mostly never offers);
    its schema and argument model are built when first asked for, rewrites included."""
    from edgecrew.tools.base import ToolParameters, spec_from_function

    def later(count: NotDefinedYet) -> str:  # type: ignore[name-defined]  # noqa: F821
        """Resolved only when the schema is built."""
        return str(count)

    spec = spec_from_function(later)  # no NameError: nothing read yet
    with pytest.raises(NameError):
        _ = spec.input_schema

    def add(a: int, b: int = 2) -> int:
        """Add."""
        return a + b

    params = ToolParameters(function=add).rewritten(lambda s: {**s, "description": "two numbers"})
    assert params.schema["description"] == "two numbers" and params.schema["required"] == ["a"]
    assert params.model is not None and params.model.model_validate({"a": "3"}).model_dump() == {"a": 3, "b": 2}
    assert ToolParameters({"type": "object"}).rewritten(lambda s: {**s, "x": 1}).schema == {"type": "object", "x": 1}


async def test_a_long_json_result_reaches_the_model_as_valid_json_of_its_shape_and_long_text_says_what_is_cut(
    tmp_path: Path,
) -> None:
    import json

    from edgecrew.domain.messages import ToolCall
    from edgecrew.engine.toolcall import MAX_OBSERVATION_CHARS, execute_tool

    registry = ToolRegistry()

    def listing(n: int) -> dict[str, object]:
        """A listing with one long text per file."""
        return {"total": n, "files": [{"path": f"f{i}.py", "text": "x" * 300} for i in range(n)]}

    def log(n: int) -> str:
        """A long text."""
        return "line\n" * n

    registry.register(spec_from_function(listing, name="t.listing"))
    registry.register(spec_from_function(log, name="t.log"))
    ctx = ToolContext("r", "a", tmp_path)
    seen, is_error = await execute_tool(registry, ToolCall("c", "t.listing", {"n": 40}), ["t.listing", "t.log"], ctx, 5)
    shown = json.loads(seen)  # half a JSON text was all a model got: it read it as broken
    assert not is_error and len(seen) <= MAX_OBSERVATION_CHARS
    assert shown["total"] == 40 and shown["files"][0]["path"] == "f0.py" and shown["files"][-1].endswith("more")
    small, _ = await execute_tool(registry, ToolCall("c", "t.listing", {"n": 2}), ["t.listing", "t.log"], ctx, 5)
    assert json.loads(small) == listing(2)  # under the limit: whole
    text, _ = await execute_tool(registry, ToolCall("c", "t.log", {"n": 1000}), ["t.listing", "t.log"], ctx, 5)
    assert text == "line\n" * 800 + " [... 1000 more chars]"
