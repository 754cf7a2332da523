"""The ``policies:`` section of ``edgecrew.yaml`` (when jobs may start). Owned by the jobs work: TO BE FILLED."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PolicyDoc(BaseModel):
    """One scheduling policy."""

    model_config = ConfigDict(extra="forbid")
