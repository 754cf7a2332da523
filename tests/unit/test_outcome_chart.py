"""The metrics page's run outcomes chart: bars stacked by outcome per day, a legend of totals, and an
empty state that says what to do."""

from __future__ import annotations

import re

from edgecrew.ui.views import stacked_bars


def test_runs_stack_by_outcome_with_a_legend_of_totals() -> None:
    days = [("05-01", {}), ("05-02", {"succeeded": 2, "failed": 1, "running": 1}), ("05-03", {"cancelled": 1})]
    svg = str(stacked_bars(days))
    assert len(re.findall(r'<rect class="seg-', svg)) == 4  # three outcomes on 05-02, one on 05-03
    assert "05-02: 1 not finished" in svg and "05-03: 1 cancelled" in svg
    heights = {
        k: float(h)
        for k, h in re.findall(r'class="seg-(\w+)" x="[\d.]+" y="[\d.]+" width="\d+" height="([\d.]+)"', svg)
    }
    assert heights["succeeded"] == 2 * heights["failed"]  # to scale: 2 runs draw twice as high as 1
    assert "succeeded <b>2</b>" in svg and "failed <b>1</b>" in svg and "not finished <b>1</b>" in svg
    assert 'aria-label="run outcomes per day, 3 days: 2 succeeded, 1 failed, 1 cancelled, 1 not finished"' in svg


def test_no_runs_is_an_empty_state_with_a_way_to_start_one() -> None:
    html = str(stacked_bars([("05-01", {}), ("05-02", {})]))
    assert "No runs in the last 2 days" in html and 'href="/ui/teams"' in html and "<svg" not in html
