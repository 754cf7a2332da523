"""Where the platform tools find their rules, guidelines and cluster: one small frozen config.

The composition root builds it from settings and hands it to :func:`register_platform_tools`; until
those settings exist, :meth:`PlatformConfig.from_env` reads the same ``EDGECREW_*`` names. The data
that ships with edgecrew (rules, templates, guidelines) sits next to this module, so it travels in the
wheel and resolves to a real directory (copier needs one).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgecrew.errors import ToolError

__all__ = [
    "DATA_DIR",
    "DEFAULT_GUIDELINES",
    "DEFAULT_RULES",
    "TEMPLATES_DIR",
    "WORKSPACE_RULES",
    "PlatformConfig",
    "install_command",
    "require",
]

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_RULES = DATA_DIR / "rules.yaml"
TEMPLATES_DIR = DATA_DIR / "templates"
DEFAULT_GUIDELINES = DATA_DIR / "guidelines"
WORKSPACE_RULES = "platform.yaml"  # a project's own rules, at the root of the run's workspace


@dataclass(frozen=True)
class PlatformConfig:
    """The platform tools' settings (None: the default that ships with edgecrew, or no cluster)."""

    k8s_context: str | None = None  # kubectl context k8s.apply deploys to; None: --dry-run=client only
    rules: Path | None = None  # a rules file replacing sections of the default rules.yaml
    guidelines: Path | None = None  # the folder docs.search reads (*.md); None: the shipped guidelines
    kubectl: str = "kubectl"  # the program, found on PATH

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlatformConfig:
        """Read EDGECREW_K8S_CONTEXT, EDGECREW_PLATFORM_RULES and EDGECREW_PLATFORM_GUIDELINES (empty: unset)."""
        env = os.environ if env is None else env

        def path(key: str) -> Path | None:
            value = env.get(key, "").strip()
            return Path(value).expanduser() if value else None

        return cls(
            k8s_context=env.get("EDGECREW_K8S_CONTEXT", "").strip() or None,
            rules=path("EDGECREW_PLATFORM_RULES"),
            guidelines=path("EDGECREW_PLATFORM_GUIDELINES"),
        )

    @property
    def guidelines_dir(self) -> Path:
        return self.guidelines or DEFAULT_GUIDELINES


def install_command() -> str:
    """The command that installs the platform extra into the Python running edgecrew: an editable
    install of the checkout edgecrew runs from (as ``make install`` sets it up; installing
    'edgecrew[platform]' there would replace the checkout), else the package from the index."""
    pip = f"{shlex.quote(sys.executable)} -m pip install"
    checkout = DATA_DIR.parents[2]  # <checkout>/src/edgecrew/platform
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "edgecrew").is_dir():
        return f"{pip} -e {shlex.quote(f'{checkout}[platform]')}"
    return f"{pip} 'edgecrew[platform]'"


def require(module: str, distribution: str, tool: str) -> None:
    """A ToolError that says how to install ``distribution`` when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise ToolError(
            f"{tool} needs {distribution}, which is not installed; install edgecrew's platform extra "
            f"(copier, check-jsonschema, kubernetes-validate) with: {install_command()}"
        )
