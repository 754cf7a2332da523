"""`edgecrew init`: a project directory with an example team that runs on the embedded model."""

from __future__ import annotations

from pathlib import Path

from edgecrew.errors import UserError

CONFIG = """\
# edgecrew project. Teams live in teams/*.yaml (or inline under `teams:` below).
# Models: the built-in alias `local` is SmolLM2-135M running in-process through llama.cpp.
# models:
#   my-gguf: {backend: llamacpp, path: models/my-model.gguf, n_ctx: 4096, threads: 2}
#   fake:    {backend: scripted, replies: ["hello"]}     # deterministic, for tests
# plugins: [tools.py]     # Python files whose @edgecrew.tool functions become tools

# The edge agent team's day (the built-in team `crew`), off until you turn it on: create the project
# (`edgecrew projects create main`, then put your OKRs in its files as okr.json), then
# `edgecrew routines resume crew-morning` (and the others); `edgecrew serve` fires them.
# Cron times are read in each routine's `timezone` (an IANA name; UTC when left out): 7:30 below is 7:30
# UTC. Put your own zone there, e.g. Europe/Berlin, for 7:30 on your clock (summer time included).
routines:
  crew-morning:   {team: crew, task: Morning alignment, cron: "30 7 * * 1-5", timezone: UTC,
                   project: main, enabled: false}
  crew-midday:    {team: crew, task: Midday triage, cron: "0 12 * * 1-5", timezone: UTC,
                   project: main, enabled: false}
  crew-afternoon: {team: crew, task: Afternoon review, cron: "30 15 * * 1-5", timezone: UTC,
                   project: main, enabled: false}
  crew-evening:   {team: crew, task: Evening knowledge sync, cron: "0 20 * * 1-5", timezone: UTC,
                   project: main, enabled: false}
  crew-weekly:    {team: crew, task: Weekly OKR review, cron: "0 8 * * 1", timezone: UTC,
                   project: main, enabled: false}
"""

TEAM = """\
name: example
description: A researcher lists key points, a summarizer writes them up, and the summary is saved to notes.md.
output: summarizer             # the run's answer
agents:
  researcher:
    role: researcher
    model: local               # the embedded SmolLM2-135M
    system: List the key points needed to answer the task, at most 3, each one short sentence.
    output_schema:
      type: object
      properties:
        points: {type: array, items: {type: string, maxLength: 120}, minItems: 1, maxItems: 3}
      required: [points]
    limits: {max_steps: 2, max_tokens: 160}
  summarizer:
    role: summarizer
    model: local
    system: Write a short summary of the key points, in two or three sentences.
    limits: {max_steps: 2, max_tokens: 200}
  save:                        # a tool agent: one call, no model (a 135M model is unreliable at tool calls)
    tool: files.write
    arguments: {path: notes.md, content: "{{ outputs.summarizer.text }}"}
graph:
  start: researcher
  edges:
    - {from: researcher, to: summarizer}
    - {from: summarizer, to: save}
    - {from: save, to: end}
"""


def create_project(directory: Path) -> list[Path]:
    files = {directory / "edgecrew.yaml": CONFIG, directory / "teams" / "example.yaml": TEAM}
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} is a file, not a directory; name a new or an empty directory")
    existing = [str(f) for f in files if f.exists()]
    if existing:
        verb = "already exists" if len(existing) == 1 else "already exist"
        raise UserError(f"{', '.join(existing)} {verb}; choose an empty directory or remove them")
    written: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        for path in written:  # nothing half-made: the next try starts from the same empty directory
            path.unlink(missing_ok=True)
        raise UserError(f"cannot write the project in {directory}: {exc.strerror or exc} ({exc.filename})") from None
    return list(files)
