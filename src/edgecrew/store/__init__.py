"""The store: runs, steps, messages and events in SQLite (default) or Postgres."""

from edgecrew.store.repo import EventRecord, RunRecord, RunStore, StepRecord, open_store

__all__ = ["EventRecord", "RunRecord", "RunStore", "StepRecord", "open_store"]
