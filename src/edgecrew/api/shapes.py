"""Shapes every router shares: answers built from store records, and offset paging (its query
parameters and the page it answers with)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=200, description="At most this many items.")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Skip this many (newest first).")]


def sse_stream(events: Sequence[str], data: str) -> dict[str, Any]:
    """The ``text/event-stream`` content of a response: the schema of each event of the stream (OpenAPI
    before 3.2 describes a stream's events with ``schema``; a client, schemathesis among them, checks each
    event against it), naming the events it sends and what their ``data`` holds."""
    event = {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": list(events)} if events else {"type": "string"},
            "data": {"type": "string", "description": data},
            "id": {"type": "string"},
        },
    }
    return {"text/event-stream": {"schema": event}}


class Out(BaseModel):
    """An answer read off a store record's attributes (fields the answer does not declare stay out)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, record: object) -> Self:
        return cls.model_validate(record)


class Page(BaseModel, Generic[T]):
    """One page of a list, with where the next one starts."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last one.")

    @classmethod
    def of(cls, items: Sequence[T], total: int, limit: int, offset: int) -> Page[T]:
        more = offset + len(items) < total
        return cls(
            items=list(items),
            total=total,
            limit=limit,
            offset=offset,
            next_offset=offset + len(items) if more else None,
        )
