"""`edgecrew cluster status`'s table as a terminal of 80 columns shows it (the command itself runs in e2e)."""

from __future__ import annotations

from rich.console import Console

from edgecrew.cli.cluster import workers_table
from edgecrew.cluster import ClusterStatus
from edgecrew.cluster.lease import WorkerInfo


def test_a_workers_id_is_shown_whole_in_a_narrow_terminal() -> None:
    """The id was cut to "vm:19812:179…": the one name a user has for a worker (logs, incidents) was lost."""
    wid = "edge-box-kitchen:19812:1796614362"
    worker = WorkerInfo(wid, "edge-box-kitchen", 19812, ("coder", "fast", "local"), ("coding",), 100.0, 90.0)
    found = ClusterStatus(True, 10.0, workers=[worker.to_dict(101.0, 10.0)])
    console = Console(width=80, record=True)
    console.print(workers_table(found))
    shown = console.export_text()
    assert "…" not in shown
    assert wid in "".join(line.split("│")[1].strip() for line in shown.splitlines() if line.count("│") > 2)
