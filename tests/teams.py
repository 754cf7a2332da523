"""Team YAML that several test modules run, kept once; every agent uses the model alias ``fake``.

PLANNER, WRITER and CRITIC are agent entries (indented to sit under ``agents:``), so a test that
needs a variant composes its team from them instead of copying the agents' schemas.
"""

from __future__ import annotations

PLANNER = """\
  planner:
    model: fake
    system: plan
    output_schema: {type: object, properties: {steps: {type: array, items: {type: string}}}, required: [steps]}
"""

WRITER = """\
  writer: {model: fake, system: write}
"""

CRITIC = """\
  critic:
    model: fake
    system: judge
    output_schema:
      type: object
      properties: {verdict: {enum: [approve, revise]}, notes: {type: string}}
      required: [verdict]
"""

# The critic sends the writer back while it says "revise", at most twice.
REVISE = """\
    - {from: critic, to: writer, when: "verdict == 'revise'", max_loops: 2}
    - {from: critic, to: end}
"""

CHAIN = """\
name: chain
agents:
  a: {model: fake, system: first}
  b: {model: fake, system: second}
  c: {model: fake, system: third}
graph:
  start: a
  edges:
    - {from: a, to: b}
    - {from: b, to: c}
    - {from: c, to: end}
"""

REVIEW = (
    "name: review\nagents:\n"
    + WRITER
    + CRITIC
    + """\
graph:
  start: writer
  edges:
    - {from: writer, to: critic}
"""
    + REVISE
)

TRIO = (
    "name: trio\nagents:\n"
    + PLANNER
    + WRITER
    + CRITIC
    + """\
graph:
  start: planner
  edges:
    - {from: planner, to: writer}
    - {from: writer, to: critic}
"""
    + REVISE
)

FAN = """\
name: fan
agents:
  plan: {model: fake, system: plan}
  left: {model: fake, system: left}
  right: {model: fake, system: right}
  merge: {model: fake, system: merge}
graph:
  start: plan
  edges:
    - {from: plan, to: [left, right]}
    - {from: [left, right], to: merge}
    - {from: merge, to: end}
"""

# plan routes to left only, so the join into merge waits for right forever.
JOIN_NEVER = """\
name: joinnever
agents:
  plan:
    model: fake
    system: plan
    output_schema: {type: object, properties: {go: {type: string}}, required: [go]}
  left: {model: fake, system: l}
  right: {model: fake, system: r}
  merge: {model: fake, system: m}
graph:
  start: plan
  edges:
    - {from: plan, to: left, when: "go == 'left'"}
    - {from: plan, to: right}
    - {from: [left, right], to: merge}
    - {from: merge, to: end}
"""
