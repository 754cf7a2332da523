"""Stub: mission-control pages for alerts. TO BE FILLED."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
