"""schemathesis against the app, every phase: no 5xx, every answer declared by the OpenAPI document
(status, content type, body, headers), problem details on every error, a valid request accepted
and an invalid one refused, and authentication enforced.

The operations come from the app's own OpenAPI document, so routers added later are tested with
no change here. The app runs as the real `edgecrew serve` process on a free port (one for the
module, with a finished run, a run waiting for approval and a task with code and a log file, so
the endpoints have things to return). Not in this process: schemathesis's ASGI transport would
start the app's lifespan on its own event loop and keep it until the interpreter exits, and a
server thread here would touch the global ``random`` state while Hypothesis draws (which it
reports as a strategy misusing ``random``).

Every phase runs: examples, coverage and fuzzing in one test per operation (valid and invalid
data; a valid task id in the path names the seeded task and a valid team in a run's body a real
team, so that requests reach the server's checks instead of a 404), and the stateful phase in one
test, where schemathesis's engine chains operations by the links it infers (a task created, then
its code uploaded, listed, downloaded...).

The only thing left out is the live form of ``GET /runs/{run_id}/events`` (``Accept:
text/event-stream``): it is a stream that stays open until the run ends, not a document a schema
can check; tests/api/test_sse.py reads it with a real client. The JSON form of the same operation
is tested here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, settings
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.engine import Status, events
from schemathesis.engine.recorder import ScenarioRecorder
from schemathesis.engine.run import PhaseName
from schemathesis.openapi.checks import RejectedPositiveData

from edgecrew.api.problems import PROBLEM_JSON, Problem
from edgecrew.app import create_app
from tests.api import conftest as fixtures
from tests.api.live import ServerProcess, cli_env, create_key, write_project

MAX_EXAMPLES = 12
STATEFUL_SCENARIOS = 100
STATEFUL_STEPS = 10
STATEFUL_SEED = 20261205
PHASES = ("examples", "coverage", "fuzzing", "stateful")

# schemathesis's defaults, with two additions the server's contract needs (nothing is taken out):
# - a schema-violating body may also be refused with 413 when it is over the server's size limit
#   (a `maxLength` of a million characters, sent as 12-byte escapes, is over 8 MiB);
# - POST /approvals/{id}/edit checks the arguments against the tool's own schema, which the
#   document cannot state (the tool is known only from the approval): a 400 says they do not fit.
CONFIG_DATA: dict[str, Any] = {
    "phases": {name: {"enabled": True} for name in PHASES},
    "checks": {
        "negative_data_rejection": {
            "expected-statuses": [
                "400",
                "401",
                "403",
                "404",
                "405",
                "406",
                "409",
                "413",
                "415",
                "422",
                "428",
                "429",
                "5xx",
            ],
        },
    },
    "operations": [
        {
            "include-name": "POST /approvals/{approval_id}/edit",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"],
                },
            },
        },
        {
            # The document cannot say the file must be a decodable WAV: random bytes are a 400 that names
            # the format it found.
            "include-name": "POST /v1/audio/transcriptions",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"],
                },
            },
        },
    ],
}
schema = schemathesis.openapi.from_dict(
    create_app(start_engine=False).openapi(), config=SchemathesisConfig.from_dict(CONFIG_DATA)
)
OPERATIONS = [(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item]
PROBLEM_STATUSES = ("400", "401", "403", "404", "409", "413", "422", "429")

# Failures found in other modules and reported to their owners, keyed by "METHOD /path": the
# operation is still tested, and only a failure turns into xfail (delete the entry once it passes).
# In the stateful test a failure of a known operation is set aside and the scenario goes on.
KNOWN: dict[str, str] = {
    "POST /v1/chat/completions": "refuses with 422 a conversation whose last message is not the user's, "
    "which the schema allows",
}
# Refusals of schema-valid requests, known by a phrase of their answer and reported like KNOWN: a
# failure that is only such a refusal is set aside too, whatever the operation.
KNOWN_REFUSALS: dict[str, str] = {
    "the job could never start here": (
        "a job needing more memory or CPU cores than the machine has, or GPU memory on a machine without a "
        "GPU, could never start and is refused; the schema's bounds cannot know the machine"
    ),
    "it checks nothing": (
        "a task's test check with nothing that can fail (no assert, test function or exit: '9') is refused, as "
        "every version would pass it; a schema cannot say what Python source can fail"
    ),
    "checks is empty": (
        "a task's checks with no io case and a test with no visible character are refused; the schema says a "
        "test is required where no io case is given, and leaves the blank test to the server"
    ),
    "limits is empty": (
        "a task's limits whose every field is null are refused as empty (as `{}` is, which the schema's "
        "minProperties forbids); the schema lets each limit be null and cannot say that one must not be"
    ),
    "the last message is empty": (
        "a /v1 request whose last message has no visible character is refused (it is the team's task); the "
        "schema's content pattern cannot single out the last item of the list"
    ),
    "too little to start a process": (
        "a sandboxed command job whose memory need (its address-space limit) is under 32 MiB is refused; the "
        "bound depends on the body's sandbox flag, which the schema's bounds on needs cannot see"
    ),
    "is ambiguous; give more characters": (
        "an id prefix that names several runs or approvals (e.g. 'R': the LIKE is case-insensitive) is a "
        "400; store.repo.row_by_id raises a plain UserError where a ConflictError would be the declared 409"
    ),
}


@dataclass(frozen=True)
class Live:
    """The server's URL, an admin key and the task the seed left in its store."""

    url: str
    key: str
    task_id: str
    output: Callable[[], str]  # what the server printed so far

    def errors(self) -> str:
        """The server's tracebacks so far, to read beside a failure (a 500 says nothing more by itself)."""
        lines = self.output().splitlines()
        found = [i for i, line in enumerate(lines) if "Traceback" in line]
        return "\n".join("\n".join(lines[i : i + 40]) for i in found[-3:])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("schema")
    project = write_project(root / "project")
    # The built-in teams' model is scripted here: the fuzzer starts sessions and runs of every team, and
    # real inference under a loaded machine outlasted its requests (a read timing out is no finding).
    config = project / "edgecrew.yaml"
    # Its tags as the built-in `local` has them: without `coding`, build-loop (which asks for that tag) was
    # invalid, and GET /teams/build-loop answered 422 when a stateful chain reached it.
    scripted_local = 'models:\n  local: {backend: scripted, replies: ["ok"], tags: [general, small, coding]}\n'
    config.write_text(config.read_text().replace("models:\n", scripted_local, 1))
    # No plain-process jobs: the fuzzer holds an admin key and must not run commands as the server's user.
    env = cli_env(
        project, root / "home", EDGECREW_RATE_LIMIT_PER_MINUTE="1000000", EDGECREW_JOBS_PLAIN_COMMANDS="false"
    )
    key = create_key(env, "schemathesis", "admin")
    server = ServerProcess(project, env).start()
    try:
        yield Live(server.url, key, _seed(server.url, key), server.output)
    finally:
        server.stop()


def _seed(url: str, key: str) -> str:
    """A finished run, a run waiting for approval, and a task with a code version and a log file
    (its id is returned)."""
    headers = fixtures.auth(key)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        # A chain that reaches an invalid team reads its 422 as a valid request refused: none may be.
        invalid = [t["name"] for t in http.get("/teams").json() if not t["valid"]]
        assert not invalid, f"teams invalid on the fuzzer's server: {invalid}"
        done = http.post("/runs", json={"team": "echo", "task": "seed"}).json()["id"]
        http.post("/runs", json={"team": "ship", "task": "seed"}).raise_for_status()
        task_id: str = http.post("/tasks", json={"title": "seed", "team": "echo"}).json()["id"]
        http.post(f"/tasks/{task_id}/code", files={"file": ("main.py", b"print(42)\n")}).raise_for_status()
        http.post(f"/tasks/{task_id}/results", json={"version": 1, "accuracy": 1, "logs": "ok\n"}).raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            finished = http.get(f"/runs/{done}").json()["status"] == "succeeded"
            if finished and http.get("/approvals").json():
                return task_id
            time.sleep(0.1)
    raise AssertionError("the seed runs did not reach their states")


@schemathesis.check
def problem_on_error(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx/5xx is an RFC 9457 problem whose status matches the HTTP status."""
    if response.status_code < 400:
        return
    kind = response.headers.get("content-type", [""])[0]
    assert kind.startswith(PROBLEM_JSON), f"{response.status_code} answered as {kind!r}, not {PROBLEM_JSON}"
    body = response.json()
    assert body["status"] == response.status_code and body["title"], body


def _as_json(case: schemathesis.Case) -> None:
    if case.operation.path == "/runs/{run_id}/events":
        case.headers = {**(case.headers or {}), "Accept": "application/json"}  # the JSON form (module docstring)


def _on_seeded_things(case: schemathesis.Case, task_id: str) -> None:
    """A valid task id in the path becomes the seeded task's, and a valid team in a run's body a
    real team: a random one would answer 404 before the server looks at the rest of the request.
    (schemathesis's engine does the same with ids it saw in answers.) Invalid values stay as drawn."""
    components = case.meta.components if case.meta is not None else {}
    path, body = components.get(ParameterLocation.PATH), components.get(ParameterLocation.BODY)
    if path is not None and path.mode.is_positive and "task_id" in (case.path_parameters or {}):
        case.path_parameters["task_id"] = task_id
    if case.operation.path == "/runs" and body is not None and body.mode.is_positive and isinstance(case.body, dict):
        case.body["team"] = "echo"


def _label(case: schemathesis.Case) -> str:
    return f"{case.method.upper()} {case.operation.path}"


def _known(case: schemathesis.Case, found: FailureGroup) -> str | None:
    """Why this failure is known (KNOWN, KNOWN_REFUSALS), or None."""
    if _label(case) in KNOWN:
        return KNOWN[_label(case)]
    if all(isinstance(failure, RejectedPositiveData) for failure in found.exceptions):
        components = case.meta.components if case.meta is not None else {}
        if any(c.mode.is_negative for c in components.values()):
            # schemathesis's coverage phase, varying one parameter, can leave another component as it
            # drew it for a negative case (a body `0` for a strict body), and still label the case positive.
            return "the case holds a component schemathesis drew as invalid: refusing it is right"
        return next((why for phrase, why in KNOWN_REFUSALS.items() if phrase in str(found)), None)
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_operation_conforms(case: schemathesis.Case, live: Live) -> None:
    _as_json(case)
    _on_seeded_things(case, live.task_id)
    try:
        case.call_and_validate(base_url=live.url, headers=fixtures.auth(live.key), timeout=30)
    except FailureGroup as found:
        known = _known(case, found)
        if known:
            pytest.xfail(f"known: {known}\n{found}")
        raise


def test_served_document_is_the_tested_one(live: Live) -> None:
    served = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    assert set(served["paths"]) == set(schema.raw_schema["paths"])


def test_every_phase_is_on() -> None:
    for method, path in OPERATIONS:
        operation = schema[path][method]
        phases = schema.config.phases_for(operation=operation)
        assert all(phases.get_by_name(name=name).enabled for name in PHASES), f"{method} {path}"


def test_problems_are_one_schema_not_a_response_model_on_each_route() -> None:
    """Every problem answer refers to the one Problem schema of the document's components, and no route
    declares Problem as a response model: FastAPI builds a pydantic adapter for each model of each route's
    responses when the route is declared (nine problems on ~170 routes: ~110 ms of `edgecrew serve`'s start)."""
    app = create_app(start_engine=False)
    declared = [
        f"{route.path} {status}"
        for route in iter_route_contexts(app.routes)
        for status, field in (getattr(route, "response_fields", None) or {}).items()
        if field.field_info.annotation is Problem
    ]
    assert declared == []
    doc = app.openapi()
    assert doc["components"]["schemas"]["Problem"]["required"] == ["title", "status"]
    refs = {
        json.dumps(response["content"][PROBLEM_JSON]["schema"])
        for item in doc["paths"].values()
        for operation in item.values()
        for response in operation["responses"].values()
        if PROBLEM_JSON in response.get("content", {})
    }
    assert refs == {json.dumps({"$ref": "#/components/schemas/Problem"})}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_declares_its_problems(method: str, path: str) -> None:
    """An authenticated operation says which problems it may answer, as problem+json."""
    op = schema.raw_schema["paths"][path][method.lower()]
    if not op.get("security"):
        pytest.skip("no key needed")
    try:
        for status in PROBLEM_STATUSES:
            declared = op["responses"].get(status)
            assert declared, f"{method} {path} does not declare {status}"
            assert PROBLEM_JSON in declared.get("content", {}), f"{method} {path}: {status} is not a problem"
        assert "WWW-Authenticate" in op["responses"]["401"].get("headers", {})
        assert "Retry-After" in op["responses"]["429"].get("headers", {})
    except AssertionError as found:
        if f"{method} {path}" in KNOWN:
            pytest.xfail(f"known: {KNOWN[f'{method} {path}']}\n{found}")
        raise


def test_stateful_sequences_conform(live: Live) -> None:
    """Chains of calls along the links schemathesis infers (a task created, then its code uploaded,
    listed, downloaded...), with the same checks as the one-operation tests. schemathesis's own
    engine runs them, as `st run --phases stateful` does: it plays again a sequence that the
    server's changed state makes go another way, where a Hypothesis state machine run under pytest
    stops as flaky."""
    workflow = schemathesis.openapi.from_dict(schema.raw_schema, config=_stateful_config(live))
    found: list[str] = []
    reached: set[str] = set()  # operations that answered 2xx
    ran = False
    for event in engine.from_schema(workflow).execute():
        if isinstance(event, events.ScenarioFinished):
            found.extend(_unknown_failures(event.recorder))
            for case_id, interaction in event.recorder.interactions.items():
                if interaction.response is not None and interaction.response.status_code < 300:
                    reached.add(_label(event.recorder.cases[case_id].value))
        elif isinstance(event, events.PhaseFinished) and event.phase.name == PhaseName.STATEFUL_TESTING:
            ran = event.status != Status.SKIP
        elif isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: {event.info.title}\n{event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            found.extend(f"{f.operation}: {f.title}\n{f.message}" for f in event.failures)
    assert ran, "the stateful phase did not run (no links between operations?)"
    assert not found, "\n\n".join([*dict.fromkeys(found), live.errors()])
    # The chains reached real things: an id from one answer named something in a later request.
    assert any("{" in label for label in reached), sorted(reached)


def _unknown_failures(recorder: ScenarioRecorder) -> Iterator[str]:
    """A report of each failed check of a scenario that KNOWN and KNOWN_REFUSALS do not explain."""
    for case_id, checks in recorder.checks.items():
        case = recorder.cases[case_id].value
        interaction = recorder.interactions.get(case_id)
        answer = interaction.response.content if interaction is not None and interaction.response is not None else b""
        for check in checks:
            if check.status != Status.FAILURE or check.failure_info is None or _label(case) in KNOWN:
                continue
            if check.name == "positive_data_acceptance" and any(p.encode() in answer for p in KNOWN_REFUSALS):
                continue
            failure = check.failure_info.failure
            said = answer[:600].decode("utf-8", "replace")  # the server's reason, beside the request
            yield f"{_label(case)}: {failure.title}\n{failure.message}\n{check.failure_info.code_sample}\n{said}"


def _stateful_config(live: Live) -> SchemathesisConfig:
    """CONFIG_DATA with the server, its key and only the stateful phase on (the others run per operation)."""
    return SchemathesisConfig.from_dict(
        CONFIG_DATA
        | {
            "base-url": live.url,
            "headers": fixtures.auth(live.key),
            "seed": STATEFUL_SEED,
            "workers": 1,
            "phases": {name: {"enabled": name == "stateful"} for name in PHASES}
            | {
                "stateful": {
                    "enabled": True,
                    "max-steps": STATEFUL_STEPS,
                    # Valid requests only: a value a link carries over from an invalid request is
                    # not checked again, and its refusal would read as a valid request refused.
                    "generation": {"mode": "positive", "max-examples": STATEFUL_SCENARIOS},
                }
            },
        }
    )
