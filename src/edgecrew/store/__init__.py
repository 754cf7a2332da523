"""The store: runs, steps, messages and events in SQLite (default) or Postgres."""

from edgecrew.domain.events import EventRecord
from edgecrew.store.repo import RunRecord, RunStore, StepRecord, open_store

__all__ = ["EventRecord", "RunRecord", "RunStore", "StepRecord", "open_store"]
