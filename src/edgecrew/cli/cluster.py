"""`edgecrew worker` (one process of a cluster on a shared Postgres) and `edgecrew cluster status`."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from edgecrew.cli.common import ProjectOpt, arun, console, guard, runtime

if TYPE_CHECKING:
    from edgecrew.cluster import ClusterStatus

cluster_app = typer.Typer(help="Workers on several machines sharing one Postgres.", no_args_is_help=True)


def worker(
    project: ProjectOpt = None,
    models: Annotated[
        str | None, typer.Option(help="Model aliases this worker serves, comma-separated (default: all it knows).")
    ] = None,
) -> None:
    """Run queued team runs and model calls of the cluster until stopped (EDGECREW_CLUSTER=1, Postgres)."""
    from edgecrew.bootstrap import bootstrap
    from edgecrew.cluster import ClusterWorker
    from edgecrew.settings import get_settings

    update: dict[str, object] = {}
    if project is not None:
        update["project"] = project
    if models is not None:
        update["worker_models"] = models
    settings = get_settings().model_copy(update=update)

    if settings.log_format != "off":  # as `edgecrew serve` logs: each line with its time and level
        from edgecrew.telemetry.logging import configure_logging

        configure_logging(level=settings.log_level, fmt=settings.log_format)

    async def serve() -> None:
        rt = guard(lambda: bootstrap(settings))
        node = guard(lambda: ClusterWorker(rt))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await node.start()
        console.print(f"edgecrew worker {node.id} serving {', '.join(node.aliases)} (Ctrl-C stops)", highlight=False)
        try:
            await stop.wait()
        finally:
            await node.stop()

    arun(serve)


@cluster_app.command("status")
def status(project: ProjectOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Workers (state, models, load), the models each live worker serves, and the queues' depths."""
    from edgecrew.cluster import ClusterService

    found = guard(lambda: ClusterService.of(runtime(project)).status())
    if as_json:
        print(json.dumps(found.to_dict()))
        return
    if not found.enabled:
        from edgecrew.settings import get_settings

        console.print(f"the cluster is off: {guard(get_settings).cluster_off_because}")
        return
    console.print(workers_table(found))
    for warning in found.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if not found.workers:
        console.print("no worker has joined yet: start `edgecrew worker` on a machine with this database")
    queues = Table("queue", "waiting", "running", title="queues")
    for q in found.queues:
        queues.add_row(q["queue"], str(q["waiting"]), str(q["running"]))
    console.print(queues)


def workers_table(found: ClusterStatus) -> Table:
    """One row a worker; its id folds rather than being cut short, since it is how a worker is named."""
    workers = Table(
        Column("worker", overflow="fold"), "state", "models", "tags", "running", "heartbeat", title="workers"
    )
    for w in found.workers:
        workers.add_row(
            str(w["id"]),
            str(w["state"]),
            ", ".join(w["aliases"]),
            ", ".join(w["tags"]),
            f"{w['running']}/{w['concurrency']}",
            f"{w['heartbeat_age_s']}s ago",
        )
    return workers
