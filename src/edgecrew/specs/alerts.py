"""The ``alerts:`` section of ``edgecrew.yaml`` (usage alert rules). Owned by the alerts work: TO BE FILLED."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AlertDoc(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid")
