"""The task workspace store on a real PostgreSQL server: migration 0005, version numbers, stats."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecrew.store import open_store
from edgecrew.store.tasks import TaskStore
from tests import pg


@pytest.mark.skipif(not pg.available(), reason="PostgreSQL server binaries are missing (make test installs them)")
def test_task_store_on_postgres(tmp_path: Path) -> None:
    with pg.postgres_server() as url:
        tasks = TaskStore(open_store(url), tmp_path / "tasks")
        task = tasks.create("sort", "numbers", team=None)
        assert [tasks.add_code(task.id, "a.py", b"print(1)\n").version for _ in range(3)] == [1, 2, 3]
        tasks.delete_code(task.id, 3)
        assert tasks.add_code(task.id, "a.py", b"print(4)\n").version == 4
        tasks.add_result(task.id, version=1, accuracy=0.5, runtime_s=2.0, metrics={"f1": 0.1}, logs="x\n")
        tasks.add_result(task.id, version=2, accuracy=1.0, runtime_s=4.0)
        tasks.add_message(task.id, "gen", "generator", "go")
        tasks.add_feedback(task.id, author="eval", verdict="accepted", version=2, score=0.9)
        tasks.update(task.id, status="done")
        stats = tasks.stats()
        assert (stats.tasks_by_status["done"], stats.code_versions, stats.results, stats.messages) == (1, 3, 2, 1)
        assert (stats.avg_accuracy, stats.avg_runtime_s, stats.feedback) == (pytest.approx(0.75), pytest.approx(3.0), 1)
        assert tasks.latest_result(task.id).version == 2
        assert [f.filename for f in tasks.log_files(task.id)] == ["result-1.log"]
        tasks.store.engine.dispose()
