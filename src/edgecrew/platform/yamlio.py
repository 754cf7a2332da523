"""YAML in and out for the files the platform tools write (pipelines, manifests, policies).

Written with ruamel.yaml (a core dependency) in block style, keys in the order the code builds them,
multi-line strings as literal blocks (``run: |``), so the files read like hand-written ones.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["dump_yaml"]


def _literal_blocks(node: Any) -> Any:
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(node, dict):
        return {k: _literal_blocks(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_literal_blocks(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return LiteralScalarString(node if node.endswith("\n") else node + "\n")
    return node


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096  # never fold a long command line
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def dump_yaml(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(_literal_blocks(data), out)
    return out.getvalue()
