"""SQLAlchemy table definitions. Every schema change is a new Alembic migration, never an edit."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("team", String(160), nullable=False),  # a team, or "team/agent" for a chat with one agent
    Column("task", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("spec", JSON, nullable=False),  # the validated team, snapshotted: replay never rereads files
    Column("output", JSON),
    Column("error", Text),
    Column("workspace", Text),
    Column("project", Text),  # the project dir whose models and plugins the run needs
    Column("executor", String(200)),  # the process that created the run (host:pid:start)
    Column("request_id", String(128)),  # X-Request-ID of the API request that started it
    Column("idempotency_key", String(256)),  # Idempotency-Key of that request (unique index below)
    Column("trigger", JSON),  # what started it when no person did: {"kind": "routine"|"job", ...} (0009)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("ix_runs_status", "status"),
    Index("ix_runs_created_at", "created_at"),
    Index("uq_runs_idempotency_key", "idempotency_key", unique=True),
)

steps = Table(
    "steps",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(160), primary_key=True),
    Column("agent", String(128), nullable=False),
    Column("visit", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("outcome", String(32)),
    Column("output", JSON),
    Column("error", Text),
    Column("model_calls", Integer, nullable=False, default=0),
    Column("tool_calls", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
)

messages = Table(
    "messages",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step_key", String(160), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("tool_calls", JSON),
    Column("tool_call_id", String(64)),
    Column("name", String(128)),
    Column("created_at", Float, nullable=False),
)

# The call journal (0017): a finished model, tool or memory call's output, by run and call key. Read
# before each call, so a resumed run replays it; written with the call's event in one transaction.
calls = Table(
    "calls",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),  # model | tool | memory
    Column("output", JSON),
    Column("recorded_at", Float, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    # Idempotency key, unique per run: a replayed step rewrites its events instead of duplicating them.
    Column("key", String(200), nullable=False),
    Column("type", String(48), nullable=False),
    Column("step_key", String(160)),
    Column("agent", String(128)),
    Column("data", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("request_id", String(128)),  # the run's correlation id
    UniqueConstraint("run_id", "key", name="uq_events_run_key"),
    Index("ix_events_run_id_id", "run_id", "id"),
    Index("ix_events_type_created_at", "type", "created_at"),  # readers by type and time window (0023)
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("call_key", String(200), nullable=False),  # the tool call awaiting the decision
    Column("workflow_id", String(200), nullable=False),  # the workflow waiting for it (a branch has its own)
    Column("agent", String(128), nullable=False),
    Column("tool", String(200), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | denied | expired (its run ended first)
    Column("decision_note", Text),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float),
    UniqueConstraint("run_id", "call_key", name="uq_approvals_run_call"),
    Index("ix_approvals_status", "status"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("prefix", String(32), nullable=False),  # shown in lists, enough to tell keys apart
    Column("hash", String(64), nullable=False, unique=True),  # SHA-256 of the secret; the secret is never stored
    Column("scopes", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

# -- the task workspace (the orchestrator seed): tasks and what agents post about them -------------

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("team", String(200)),  # the team meant to work on it, when one is named
    Column("status", String(16), nullable=False),  # open | in_progress | done | failed | cancelled
    Column("code_seq", Integer, nullable=False, default=0),  # the last code version handed out (never reused)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Acceptance checks ({io: [{input, expected}], test: "python source"}) and sandbox limits
    # ({cpu_s, wall_s, memory_mb, processes}); NULL when the task names none (edgecrew.tasks.checks).
    Column("checks", JSON(none_as_null=True)),
    Column("limits", JSON(none_as_null=True)),
    Column("created_by", String(200)),  # "agent@run" of the tool call that created it; NULL for people
    Column("best_version", Integer),  # named when the task is finished
    Column("finished_at", Float),  # when it ended (done, failed, cancelled); NULL while open or reopened
    Index("ix_tasks_status", "status"),
    Index("ix_tasks_created_at", "created_at"),
)

task_code = Table(
    "task_code",
    metadata,
    Column("task_id", String(32), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("filename", String(255), nullable=False),  # sanitized; the file is <home>/tasks/<task>/code/<version>/
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("language", String(32)),
    Column("media_type", String(100), nullable=False),
    Column("author", String(128)),
    Column("created_at", Float, nullable=False),
)

task_results = Table(
    "task_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(32), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer),  # the code version it measured (kept when that version is deleted)
    Column("accuracy", Float),
    Column("loss", Float),
    Column("runtime_s", Float),
    Column("metrics", JSON, nullable=False),  # any other numbers, by name
    Column("log_file", String(255)),  # under <home>/tasks/<task>/logs/
    Column("author", String(128)),
    Column("created_at", Float, nullable=False),
    Index("ix_task_results_task_id", "task_id", "id"),
)

task_messages = Table(
    "task_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(32), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("sender", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_task_messages_task_id", "task_id", "id"),
)

task_feedback = Table(
    "task_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(32), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer),
    Column("author", String(128), nullable=False),
    Column("verdict", String(16), nullable=False),  # accepted | needs_changes | rejected
    Column("score", Float),
    Column("notes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_task_feedback_task_id", "task_id", "id"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(32), ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | succeeded | failed | killed | interrupted
    Column("reason", Text),  # why it failed, was killed or interrupted
    Column("exit_code", Integer),
    Column("run_id", String(64)),  # the run and agent that asked for it, when an agent did
    Column("agent", String(128)),
    Column("executor", String(200)),  # the process running it (host:pid:start): recovery finds orphans by it
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("stdout_log", String(255)),  # under <home>/tasks/<task>/logs/
    Column("stderr_log", String(255)),
    Column("metrics", JSON(none_as_null=True)),
    Column("checks_passed", Integer),
    Column("checks_total", Integer),
    Column("result_id", Integer, ForeignKey("task_results.id", ondelete="SET NULL")),
    Index("ix_executions_task_id", "task_id", "id"),
    Index("ix_executions_status", "status"),
)

# -- feedback on runs: ratings of answers, comments, corrections ----------------------------------

run_feedback = Table(
    "run_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("rating", Integer, nullable=False),  # +1 up, -1 down
    Column("comment", Text, nullable=False),
    Column("correction", Text),  # the answer the person wanted, when they gave one
    Column("author", String(200), nullable=False),
    Column("via", String(16), nullable=False),  # cli | api | ui | v1
    Column("created_at", Float, nullable=False),
    Index("ix_run_feedback_run_id", "run_id", "id"),
)


# -- metric samples and alerts (migration 0010) ------------------------------------------------------

# One row per sample time per host metric (edgecrew.ops.sampler): a series query is one index range.
metric_samples = Table(
    "metric_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),  # several machines may share one Postgres
    Column("at", Float, nullable=False),
    Column("name", String(64), nullable=False),  # cpu_percent, memory_available_bytes, ...
    Column("value", Float, nullable=False),
    Index("ix_metric_samples_series", "name", "host", "at"),
    Index("ix_metric_samples_at", "at"),
)

# The busiest processes of each sample, and the process trees asked to be tracked ("job:12").
process_samples = Table(
    "process_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # process | tracked
    Column("label", String(255), nullable=False),  # the process name, or the tracked label
    Column("pid", Integer, nullable=False),  # a tracked tree's root
    Column("rss_bytes", Float, nullable=False),  # a tracked tree: all its processes (Float: no 2 GiB cap)
    Column("cpu_percent", Float, nullable=False),
    Column("processes", Integer, nullable=False),  # 1, or how many a tracked tree had
    Index("ix_process_samples_host_at", "host", "at"),
    Index("ix_process_samples_at", "at"),
)

# Where each alert rule stands; ``version`` makes every transition a compare-and-set, so of two
# processes evaluating one rule only one announces a firing.
alert_states = Table(
    "alert_states",
    metadata,
    # the project dir whose rule it is ('': recorded before it was kept, claimed by the first to ask)
    Column("project", Text, primary_key=True),  # in the key since migration 0022
    Column("rule", String(64), primary_key=True),
    Column("scope", String(255), primary_key=True),  # the host for sampler rules, "" for shared ones
    Column("state", String(16), nullable=False),  # ok | pending | firing | resolved
    Column("value", Float),  # the last value seen (NULL: no data)
    Column("since", Float, nullable=False),  # when it entered this state
    Column("updated_at", Float, nullable=False),
    Column("error", Text),  # why the last evaluation had no value (Prometheus unreachable...)
    Column("version", Integer, nullable=False),
)

# Each firing and resolution, with the value that caused it and how its webhooks went.
alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("scope", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # firing | resolved
    Column("severity", String(16), nullable=False),
    Column("value", Float),
    Column("threshold", Float, nullable=False),
    Column("comparison", String(8), nullable=False),  # above | below
    Column("source", Text, nullable=False),  # metric:..., promql:..., model_calls:...
    Column("description", Text, nullable=False),
    Column("at", Float, nullable=False),
    Column("delivery", JSON(none_as_null=True)),  # {url: "delivered (HTTP 200) on attempt 2" or "failed: ..."}
    Column("reason", Text),  # why, when it is not the value (a rule removed while firing; migration 0021)
    Column("project", Text),  # the project dir whose rule it is (migration 0022; NULL: not known)
    Index("ix_alert_events_at", "at"),
    Index("ix_alert_events_rule", "rule", "at"),
    Index("ix_alert_events_project_rule", "project", "rule", "at"),
)


# -- jobs, policies and their versions (migration 0011) -----------------------------------------------

# A job: a command (argv, plain or sandboxed) or a team run, its declared needs and its life. Its
# admission is the DBOS workflow ``workflow_id``; ``executor`` and ``pid`` name the process running it.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # command | team
    Column("argv", JSON),  # the command's argv (kind command)
    Column("sandbox", Integer, nullable=False, default=0),  # 1: runs in the sandbox
    Column("team", String(160)),  # kind team
    Column("task", Text),
    Column("needs", JSON, nullable=False),  # {cpu_cores, memory_bytes, gpu_memory_bytes, duration_s}
    Column("priority", Integer, nullable=False),  # 0..100, higher first
    Column("deadline", Float),  # must have started by then (epoch seconds)
    Column("tags", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # queued waiting running succeeded failed cancelled interrupted
    Column("reason", Text),  # why it waits, failed or ended as it did
    Column("waiting_on", JSON),  # [{policy, reason, retry_at}] of the last check that said no
    Column("submitted_by", String(200)),
    Column("workflow_id", String(64)),
    Column("executor", String(200)),  # the process that started it (host:pid:start)
    Column("pid", Integer),
    Column("pid_started", Float),  # the job process's create time (a recycled pid is not it)
    Column("run_id", String(64)),  # the team run (kind team)
    Column("exit_code", Integer),
    Column("usage", JSON),  # {peak_rss_bytes, cpu_s, wall_s}
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("allowed_at", Float),  # when the policies first said yes
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_jobs_state", "state", "priority"),
    Index("ix_jobs_created_at", "created_at"),
)

# What happened to a job, in order: submitted, waiting (when the reason changes), started, finished...
job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", JSON),
    Column("at", Float, nullable=False),
    Index("ix_job_events_job_id", "job_id", "id"),
)

# Every version of every policy: from edgecrew.yaml (source "yaml", recorded when its content changes;
# doc NULL: removed from the file) or applied (an optimizer's change). The newest version is in force.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("doc", JSON(none_as_null=True)),
    Column("digest", String(64)),
    Column("source", String(200), nullable=False),  # yaml | who applied it
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("policy", "version", name="uq_policy_versions_policy_version"),
)


# -- projects, members, artifacts, knowledge graphs (migration 0013) ------------------------------------

# A project: a manager agent, members, artifacts, a case file and a files folder under the data dir
# (<home>/projects/<id>/files) that every run of the project sees at project/.
projects = Table(
    "projects",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("manager", String(200)),  # the manager agent: "team/agent" or a library agent's name
    Column("created_by", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A member of a project: a person (kind human) or an agent (kind ai: "team/agent" or a library agent).
project_members = Table(
    "project_members",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),  # human | ai
    Column("name", String(200), nullable=False),
    Column("behaviour", String(16), nullable=False),  # autonomous | semi | reactive | scheduled
    Column("role", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_project_members_project_name"),
)

# Every version of a project's case file (markdown); the newest is the case file.
case_file_versions = Table(
    "case_file_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "version", name="uq_case_file_versions_project_version"),
)

# An artifact of a project (cognitive | intellectual | info), its owner, lock and published version.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("locked_by", String(200)),
    Column("locked_at", Float),
    Column("published_version", Integer),
    Column("published_by", String(200)),
    Column("published_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("project_id", "name", name="uq_artifacts_project_name"),
)

artifact_versions = Table(
    "artifact_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("artifact_id", String(32), ForeignKey("artifacts.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("artifact_id", "version", name="uq_artifact_versions_artifact_version"),
)

# Knowledge graphs: nodes and typed edges (facts), each in one scope: a project (scope_id: its id), an
# agent ("team/agent" or a library name) or the workspace (scope_id ""). ``key`` is the name folded
# (trimmed, lower case), so "Alice" and "alice " are one node.
kg_nodes = Table(
    "kg_nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),
    Column("scope_id", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(64)),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("scope", "scope_id", "key", name="uq_kg_nodes_scope_key"),
)

kg_edges = Table(
    "kg_edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("kg_nodes.id", ondelete="CASCADE"), nullable=False),
    Column("relation", String(100), nullable=False),
    Column("target_id", Integer, ForeignKey("kg_nodes.id", ondelete="CASCADE"), nullable=False),
    Column("added_by", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("source_id", "relation", "target_id", name="uq_kg_edges_fact"),
    Index("ix_kg_edges_target", "target_id"),
)

# The project a run works in (one at most): its workspace's project/ is that project's files folder.
project_runs = Table(
    "project_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("project_id", String(32), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_project_runs_project", "project_id"),
)


# -- long-term memory (migration 0012) --

# What agents remember across runs (edgecrew.memory): the text, who wrote it, the scope that may
# recall it, and its embedding (float32 bytes, L2-normalized) under the model that made it. The
# vector index (sqlite-vec's vec0 table, or a pgvector table) is derived from these rows and rebuilt
# from them when missing, so this table is the one source of truth.
memories = Table(
    "memories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),  # agent | team | project
    Column("scope_id", String(200), nullable=False),  # the agent's, team's or project's name
    Column("text", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("agent", String(128)),  # who remembered it (NULL: a person or a program)
    Column("run_id", String(64)),  # the run it was remembered in (kept when the run is deleted)
    Column("model", String(64), nullable=False),  # the embedding model: vectors of two models never mix
    Column("dim", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_memories_scope", "scope", "scope_id", "model"),
)


# -- cluster workers (migration 0015) --

# One row per `edgecrew worker` process sharing this Postgres (edgecrew.cluster): its DBOS executor id,
# what it advertises (model aliases, their tags, its model memory), its heartbeat and its state. A
# worker whose heartbeat is older than the lease is declared dead by a live one, which asks DBOS to
# recover that executor's workflows.
workers = Table(
    "workers",
    metadata,
    Column("id", String(200), primary_key=True),  # the DBOS executor id (host:pid:start-time)
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("aliases", JSON, nullable=False),  # model aliases it serves
    Column("tags", JSON, nullable=False),  # the tags of those aliases
    Column("memory_bytes", BigInteger),  # its model memory budget (NULL: not limited)
    Column("concurrency", Integer, nullable=False),  # team runs it runs at once
    Column("running", Integer, nullable=False),  # workflows it runs now (at its last heartbeat)
    Column("state", String(16), nullable=False),  # alive | dead | stopped
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("dead_at", Float),
    Column("declared_by", String(200)),  # the worker that declared it dead and recovered its workflows
    Column("recovered", Integer, nullable=False),  # how many of its workflows were recovered elsewhere
    Column("version", String(64)),  # its edgecrew version (migration 0019)
    Column("config", String(64)),  # a digest of its project's edgecrew.yaml (migration 0019)
    Index("ix_workers_state", "state"),
)


# -- chat sessions and their turns (migration 0014) ---------------------------------------------------

# A conversation with a team (edgecrew.engine.sessions): each message is answered by a run of the team,
# whose task carries the recent turns. ``project`` is the project its runs work in (name or id), if any.
chat_sessions = Table(
    "chat_sessions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("team", String(160), nullable=False),
    Column("title", String(200), nullable=False),
    Column("project", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_chat_sessions_updated_at", "updated_at"),
)

# The turns of a session, in order. A user turn takes an even ``seq`` (2k) and its answer the odd one
# after it (2k+1), so an answer stored late (its run finished while nobody waited) still falls in place,
# and storing it twice is a no-op (the primary key). ``run_id``: the run that answers (both turns).
chat_turns = Table(
    "chat_turns",
    metadata,
    Column("session_id", String(32), ForeignKey("chat_sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("role", String(16), nullable=False),  # user | assistant
    Column("content", Text, nullable=False),
    Column("run_id", String(64)),
    Column("created_at", Float, nullable=False),
    Index("ix_chat_turns_run", "run_id"),
)


# -- supervisor incidents (migration 0016) ------------------------------------------------------------

# One failure the supervisor saw (edgecrew.ops.supervisor): a failed job, run or sandbox execution, a
# model that would not load, a tool failing too often, a worker gone silent. ``subject_type`` +
# ``subject`` is unique, so however many processes watch, a failure is one incident; ``fingerprint``
# (kind, subject type, normalized error) finds the earlier incidents of the same failure.
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    # oom | job_failed | run_failed | model | execution | tool_errors | worker_lost
    Column("kind", String(32), nullable=False),
    Column("subject_type", String(32), nullable=False),  # job | run | execution | model | tool | worker
    Column("subject", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("diagnosis", JSON, nullable=False),  # events, last log lines, resource figures
    Column("state", String(16), nullable=False),  # open | healing | healed | escalated | failed
    Column("action", String(32)),  # the action decided (retry, ..., escalate)
    Column("action_params", JSON),
    Column("decided_by", String(16)),  # rule | model | duplicate | supervisor
    Column("reason", Text),  # why that action (or why it escalated)
    Column("attempts", Integer, nullable=False),  # healing attempts so far
    Column("follow_up", String(200)),  # what the action started: job:<id> or run:<id>
    Column("approval_id", String(64)),  # a risky action's approval (its run is approval_run)
    Column("approval_run", String(64)),
    Column("regression_path", Text),  # the regression case written when it could not heal
    Column("workflow_id", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float),
    UniqueConstraint("subject_type", "subject", name="uq_incidents_subject"),
    Index("ix_incidents_fingerprint", "fingerprint"),
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_created_at", "created_at"),
)

# What happened to an incident, in order (detected, decided, applied, approval, healed, escalated...).
incident_events = Table(
    "incident_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", JSON),
    Column("at", Float, nullable=False),
    Index("ix_incident_events_incident", "incident_id", "id"),
)
