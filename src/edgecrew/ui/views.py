"""What the pages show, computed in Python: the team graph as SVG, small SVG charts, and summaries.

Drawing on the server keeps the page free of chart and graph libraries (nothing to vendor, nothing
to break offline) and lets the live stream swap in a freshly drawn graph as the run moves.
"""

from __future__ import annotations

import codecs
import html
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from edgecrew.domain.events import (
    EventRecord,
    ModelCalled,
    RouteTaken,
    RunCancelled,
    RunFinished,
    StepFinished,
    StepStarted,
)
from edgecrew.domain.runs import RunStatus
from edgecrew.domain.specs import Edge, TeamSpec
from edgecrew.ui import trace

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 132, 40, 56, 22, 12


@dataclass(frozen=True)
class GraphState:
    """Where a run is: agents that ran, the one running now, whether the run ended, each agent's
    state (running, done, failed, cancelled; unreached once the run ended without it), and how often
    each edge was taken (None where no run exists: the team page)."""

    visited: frozenset[str] = frozenset()
    current: str | None = None
    ended: str | None = None  # the run's final status
    states: Mapping[str, str] = field(default_factory=dict)
    taken: Mapping[str, int] | None = None  # by the edge's label, as route_taken events name it


def graph_state(events: Iterable[EventRecord]) -> GraphState:
    events = list(events)
    visited: set[str] = set()
    running: dict[str, str] = {}
    routed: dict[str, set[str]] = defaultdict(set)  # edge label -> the visits that took it
    ended = None
    for e in events:
        match p := e.payload:
            case RouteTaken() if p.edge:
                routed[p.edge].add(e.step_key or e.key)
            case StepStarted() if e.agent:
                visited.add(e.agent)
                running[e.step_key or e.agent] = e.agent
            case StepFinished():
                running.pop(e.step_key or "", None)
            case RunFinished():
                ended = p.status.value
            case RunCancelled():
                ended = RunStatus.CANCELLED.value
    current = None if ended else (list(running.values())[-1] if running else None)
    states = {s.agent: s.state for s in trace.build(events).steps}
    taken = {label: len(visits) for label, visits in routed.items()}
    return GraphState(frozenset(visited), current, ended, states, taken)


def loop_budget(edge: Edge, state: GraphState) -> tuple[str, str]:
    """A bounded edge's label and tooltip: its remaining loops in a run (counted as the engine counts
    them: each time the edge is taken), its maximum where no run exists; ("", "") when unbounded."""
    if not edge.max_loops:
        return "", ""
    if state.taken is None:
        return f"at most {edge.max_loops}×", f"taken at most {edge.max_loops} times in a run"
    used = state.taken.get(edge.label(), 0)
    left = max(0, edge.max_loops - used)
    return f"{left} of {edge.max_loops} left", f"taken {used} of at most {edge.max_loops} times so far"


def _layers(spec: TeamSpec) -> list[list[str]]:
    depth: dict[str, int] = {spec.graph.start: 0}
    frontier = [spec.graph.start]
    while frontier:
        nxt = []
        for node in frontier:
            for edge in spec.graph.outgoing(node):
                for target in edge.targets:
                    if target not in depth:
                        depth[target] = depth[node] + 1
                        nxt.append(target)
        frontier = nxt
    for name in spec.agents:  # unreachable agents (a valid spec has none) still get drawn
        depth.setdefault(name, max(depth.values(), default=0) + 1)
    if "end" in depth:
        depth["end"] = max(depth.values()) + (0 if list(depth.values()).count(depth["end"]) == 1 else 1)
    layers: dict[int, list[str]] = defaultdict(list)
    for name, d in depth.items():
        layers[d].append(name)
    return [layers[d] for d in sorted(layers)]


LOOP_DEPTH, LOOP_STEP, LOOP_LABEL = 40, 24, 22  # a loop arc's depth, the next one's extra, its label's room


def graph_svg(spec: TeamSpec, state: GraphState = GraphState()) -> Markup:
    """The team graph, left to right; the running agent and the visited ones are highlighted."""
    layers = _layers(spec)
    pos: dict[str, tuple[float, float]] = {}
    tallest = max(len(layer) for layer in layers)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    for i, layer in enumerate(layers):
        offset = (height - (len(layer) * NODE_H + (len(layer) - 1) * GAP_Y)) / 2
        for j, name in enumerate(layer):
            pos[name] = (PAD + i * (NODE_W + GAP_X), offset + j * (NODE_H + GAP_Y))
    width = PAD * 2 + len(layers) * NODE_W + (len(layers) - 1) * GAP_X
    loops = [
        (s, t, edge)
        for edge in spec.graph.edges
        for s in edge.sources
        for t in edge.targets
        if s in pos and t in pos and pos[t][0] <= pos[s][0]
    ]
    # Loops are arcs below the nodes, each a little deeper than the last, with their condition as a
    # label: the picture grows to hold them (a cubic's lowest point lies 3/4 of the way to its controls).
    depth = {id(edge): LOOP_DEPTH + k * LOOP_STEP for k, (_, _, edge) in enumerate(loops)}
    if loops:
        height += round(max(depth.values()) * 0.75) + LOOP_LABEL
    parts = [
        f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="team graph of {html.escape(spec.name)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    for edge in spec.graph.edges:
        for s in edge.sources:
            for t in edge.targets:
                if s not in pos or t not in pos:
                    continue
                (x1, y1), (x2, y2) = pos[s], pos[t]
                back = x2 <= x1
                label = html.escape(
                    " ".join(
                        part
                        for part in ("on failure" if edge.on_failure else "", edge.when.source if edge.when else "")
                        if part
                    )
                )
                budget, budget_tip = loop_budget(edge, state)
                tip = " · ".join(part for part in (label, budget_tip) if part)
                if back:  # a loop back: an arc below the nodes, labelled with its condition and budget
                    sx, sy, tx, ty = x1 + NODE_W / 2, y1 + NODE_H, x2 + NODE_W / 2, y2 + NODE_H
                    down = depth.get(id(edge), LOOP_DEPTH)
                    d = f"M{sx},{sy} C{sx},{sy + down} {tx},{ty + down} {tx},{ty}"
                    text = " · ".join(part for part in (label, budget) if part)
                    if text:
                        parts.append(
                            f'<text class="edge-label" x="{(sx + tx) / 2}" y="{max(sy, ty) + down * 0.75 + 14}" '
                            f'text-anchor="middle">{text}</text>'
                        )
                else:
                    sx, sy, tx, ty = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
                    mid = (sx + tx) / 2
                    d = f"M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}"
                cls = "edge back" if back else "edge"
                if edge.on_failure:
                    cls += " failure"
                    if not back:  # a forward edge's label is its tooltip only: say on the line what it is
                        parts.append(
                            f'<text class="edge-label failure" x="{(sx + tx) / 2}" y="{(sy + ty) / 2 - 6}" '
                            f'text-anchor="middle">on failure</text>'
                        )
                parts.append(f'<path class="{cls}" d="{d}" marker-end="url(#arrow)"><title>{tip}</title></path>')
    for name, (x, y) in pos.items():
        classes = ["node"]
        if name == "end":
            classes.append("end")
            if state.ended == RunStatus.SUCCEEDED.value:
                classes.append(f"ended-{state.ended}")
            elif state.ended:
                classes.append("unreached")  # the run ended elsewhere: its status says how
        node_state = state.states.get(name)
        if name in state.visited and node_state in (None, "done"):
            classes.append("visited")
        if node_state in ("failed", "cancelled"):
            classes.append(f"state-{node_state}")
        if name != "end" and state.ended and name not in state.visited:
            classes.append("unreached")
        if name == state.current:
            classes.append("current")
        agent = spec.agents.get(name)
        about = [agent.role] if agent is not None and agent.role else []
        if agent is not None and agent.kind != "model":
            classes.append(f"kind-{agent.kind}")  # drawn dashed: no model runs there
            about.append(f"tool {agent.tool}, no model" if agent.kind == "tool" else "template, no model")
        parts.append(
            f'<g class="{" ".join(classes)}" data-node="{html.escape(name)}">'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8"/>'
            f'<text x="{x + NODE_W / 2}" y="{y + NODE_H / 2 + 5}" text-anchor="middle">{html.escape(name)}</text>'
            f"<title>{html.escape(' · '.join([name, *about]))}</title></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(rows: Sequence[tuple[str, float]], *, unit: str = "", title: str = "") -> Markup:
    """Horizontal bars, one per (label, value); an empty list draws an empty-state note."""
    if not rows:
        return Markup('<p class="empty">No data yet.</p>')
    top = max(v for _, v in rows) or 1.0
    row_h, label_w, bar_w = 24, 190, 300
    height = len(rows) * row_h + 8
    parts = [
        f'<svg class="chart" viewBox="0 0 {label_w + bar_w + 90} {height}" role="img" '
        f'aria-label="{html.escape(title)}">'
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_h
        w = max(1.0, bar_w * value / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" rx="3"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{_num(value)}{html.escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(points: Sequence[tuple[str, float]], *, unit: str = "", title: str = "") -> Markup:
    """A line over labelled points in order (e.g. a metric over code versions)."""
    if not points:
        return Markup('<p class="empty">No data yet.</p>')
    w, h, pad = 480, 180, 34
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (w - 2 * pad) / max(1, len(points) - 1)
    coords = [(pad + i * step, h - pad - (v - lo) / span * (h - 2 * pad)) for i, v in enumerate(values)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<line class="axis" x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}"/>')
    parts.append(f'<path class="line" d="{path}"/>')
    for (label, value), (x, y) in zip(points, coords, strict=True):
        parts.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{html.escape(label)}: '
            f"{_num(value)}{html.escape(unit)}</title></circle>"
            f'<text x="{x:.1f}" y="{h - pad + 16}" text-anchor="middle">{html.escape(label)}</text>'
            f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle">{_num(value)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def model_stats(events: Iterable[EventRecord]) -> dict[str, list[tuple[str, float]]]:
    """Mean latency, time to first token and tokens per agent and per model, and the share of each
    agent's model calls that failed, from model_called events."""
    calls_agent: dict[str, int] = defaultdict(int)
    errors_agent: dict[str, int] = defaultdict(int)
    lat: dict[str, list[float]] = defaultdict(list)
    ttft: dict[str, list[float]] = defaultdict(list)
    tokens_agent: dict[str, float] = defaultdict(float)
    tokens_model: dict[str, float] = defaultdict(float)
    lat_agent: dict[str, list[float]] = defaultdict(list)
    for e in events:
        call = e.payload
        if not isinstance(call, ModelCalled):
            continue
        calls_agent[e.agent or "?"] += 1
        if not call.ok:
            errors_agent[e.agent or "?"] += 1
        if call.latency_s is None:
            continue
        alias = call.alias or "?"
        lat[alias].append(call.latency_s)
        lat_agent[e.agent or "?"].append(call.latency_s)
        if call.ttft_s is not None:
            ttft[alias].append(call.ttft_s)
        n = float(call.prompt_tokens + call.completion_tokens)
        tokens_agent[e.agent or "?"] += n
        tokens_model[alias] += n

    def mean(groups: Mapping[str, list[float]]) -> list[tuple[str, float]]:
        return sorted(((k, sum(v) / len(v)) for k, v in groups.items() if v), key=lambda kv: -kv[1])

    return {
        "latency_by_model": mean(lat),
        "ttft_by_model": mean(ttft),
        "latency_by_agent": mean(lat_agent),
        "tokens_by_agent": sorted(tokens_agent.items(), key=lambda kv: -kv[1]),
        "tokens_by_model": sorted(tokens_model.items(), key=lambda kv: -kv[1]),
        "error_rate_by_agent": sorted(
            ((a, 100.0 * errors_agent[a] / n) for a, n in calls_agent.items()), key=lambda kv: -kv[1]
        ),
    }


def outcomes_by_day(runs: Iterable[Any], days: int = 14) -> list[tuple[str, dict[str, int]]]:
    """Runs per day by final status, oldest day first (days without runs included)."""
    today = int(time.time() // 86400)
    counts: dict[int, dict[str, int]] = {d: defaultdict(int) for d in range(today - days + 1, today + 1)}
    for run in runs:
        day = int(run.created_at // 86400)
        if day in counts:
            counts[day][run.status.value] += 1
    return [(time.strftime("%m-%d", time.gmtime(d * 86400)), dict(c)) for d, c in sorted(counts.items())]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


OUTCOMES = ("succeeded", "failed", "cancelled", "other")  # stacked bottom to top
OUTCOME_LABELS = {"other": "not finished"}  # queued, running or waiting for an approval


def stacked_bars(days: Sequence[tuple[str, Mapping[str, int]]], *, title: str = "run outcomes per day") -> Markup:
    """Runs per day as bars stacked by outcome, with a legend of totals; a note with a way to start
    one when no day has a run. ``days`` is what :func:`outcomes_by_day` returns."""
    rows = []
    for day, counts in days:
        known = {k: counts.get(k, 0) for k in OUTCOMES[:-1]}
        rows.append((day, known | {"other": sum(counts.values()) - sum(known.values())}))
    totals = {k: sum(c[k] for _, c in rows) for k in OUTCOMES}
    if not any(totals.values()):
        return Markup(
            f'<p class="empty">No runs in the last {len(rows)} days.</p>'
            '<p><a class="button" href="/ui/teams">Start a run</a></p>'
        )
    # Sized for a phone (drawn about 1:1 at 390 px) so the day labels stay readable when it scales.
    left, slot, top_pad, plot_h, bottom = 30, 24, 10, 140, 34
    width, height = left + slot * len(rows) + 6, top_pad + plot_h + bottom
    peak = max(sum(c.values()) for _, c in rows)
    scale = plot_h / peak
    said = ", ".join(f"{totals[k]} {OUTCOME_LABELS.get(k, k)}" for k in OUTCOMES if totals[k])
    parts = [
        f'<svg class="chart stacked" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}, {len(rows)} days: {said}">'
    ]
    base = top_pad + plot_h
    for tick in sorted({0, peak // 2, peak}):
        y = base - tick * scale
        parts.append(
            f'<line class="axis grid" x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    for i, (day, counts) in enumerate(rows):
        x, y = left + i * slot + 4, float(base)
        for kind in OUTCOMES:
            if counts[kind]:
                h = counts[kind] * scale
                y -= h
                parts.append(
                    f'<rect class="seg-{kind}" x="{x}" y="{y:.1f}" width="{slot - 8}" height="{h:.1f}">'
                    f"<title>{html.escape(day)}: {counts[kind]} {OUTCOME_LABELS.get(kind, kind)}</title></rect>"
                )
        if i % 2 == (len(rows) - 1) % 2:  # every other day, always the last (today)
            cx = x + (slot - 8) / 2
            parts.append(f'<text class="day" x="{cx}" y="{base + 16}" text-anchor="middle">{html.escape(day)}</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch seg-{k}" aria-hidden="true"></span>{OUTCOME_LABELS.get(k, k)} <b>{totals[k]}</b></li>'
        for k in OUTCOMES
    )
    return Markup(f'<figure class="stacked">{"".join(parts)}<ul class="legend">{legend}</ul></figure>')


# A page highlights at most this much of a file (pygments took 25 s and 34 MB of HTML for a 4 MB file);
# the download has all of it. A task's code version and a project's file are cut alike.
SHOWN_BYTES = 256 * 1024


def shown_text(head: bytes, size: int) -> tuple[str, bool]:
    """(the text a page shows of a file of ``size`` bytes that begins with ``head``, whether it is cut).

    A file longer than SHOWN_BYTES is cut there, at a character: one the cut splits is left out, not
    shown as U+FFFD, while a byte that is no UTF-8 anywhere before it shows as U+FFFD, as in a file
    shown whole."""
    cut = size > SHOWN_BYTES
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(head[:SHOWN_BYTES], final=not cut), cut


def highlighted(filename: str, text: str) -> tuple[Markup, Markup]:
    """``text`` as HTML with line numbers, coloured by the language its file name suggests (plain text
    otherwise), and the stylesheet it needs: a task's code version and a project's file look alike."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_for_filename(filename, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    formatter = HtmlFormatter(cssclass="highlight", linenos="table", wrapcode=True)
    return Markup(highlight(text, lexer, formatter)), Markup(formatter.get_style_defs(".highlight"))
