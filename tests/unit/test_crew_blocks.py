"""The crew's block router (a template, no model): every slot of the seed's schedule runs as its block,
whatever words it shares with another block's ("Prep Dev & Knowledge Environment" is the morning's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import edgecrew
from edgecrew.domain.templating import render_text

BLOCK = yaml.safe_load((Path(edgecrew.__file__).parent / "teams" / "crew.yaml").read_text(encoding="utf-8"))["agents"][
    "block"
]["template"]

SCHEDULE = {  # the seed's Edge AI Agent Routine Schedule, slot by slot
    "morning": ["Daily Alignment Review", "Idea and Scope Audit", "Prep Dev & Knowledge Environment",
                "Expressive Output Session"],
    "midday": ["Deep Work Block", "Midday Review / Triage"],
    "afternoon": ["Document & Polish", "Postmortem and Risk Review", "Next Day Setup"],
    "evening": ["Knowledge Sync", "Dream Seeding / Subconscious Querying"],
    "weekly": ["Weekly OKR Review", "Capability Expansion", "Systemic Improvement", "Knowledge Consolidation"],
}  # fmt: skip


@pytest.mark.parametrize(("slot", "block"), [(slot, block) for block, slots in SCHEDULE.items() for slot in slots])
def test_every_slot_of_the_seed_schedule_runs_as_its_block(slot: str, block: str) -> None:
    assert json.loads(render_text(BLOCK, {"task": slot, "outputs": {}}))["block"] == block


@pytest.mark.parametrize(
    ("task", "block"),
    [("Midday triage", "midday"), ("Afternoon review", "afternoon"), ("Evening knowledge sync", "evening"),
     ("weekly okr review please", "weekly"), ("Plan my priorities", "morning"), ("something else", "morning")],
)  # fmt: skip
def test_a_blocks_own_words_still_pick_it(task: str, block: str) -> None:
    assert json.loads(render_text(BLOCK, {"task": task, "outputs": {}}))["block"] == block
