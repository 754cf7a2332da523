"""The curated public API."""

import edgecrew


def test_public_api_is_curated_and_importable() -> None:
    assert sorted(edgecrew.__all__) == sorted(
        [
            "AgentSpec",
            "ChatModel",
            "Edge",
            "EdgecrewError",
            "Graph",
            "Limits",
            "Message",
            "ModelRequest",
            "ModelResponse",
            "RunError",
            "ScriptedModel",
            "SpecError",
            "TeamSpec",
            "ToolCall",
            "ToolSpec",
            "Usage",
            "UserError",
            "__version__",
            "tool",
        ]
    )
    for name in edgecrew.__all__:
        assert getattr(edgecrew, name) is not None


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, edgecrew; print(','.join(m for m in ('dbos', 'llama_cpp', 'sqlalchemy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
