"""The HTTP server: REST + SSE, the OpenAI-compatible gateway, auth, problem details (see app.py)."""

from edgecrew.api.app import create_app

__all__ = ["create_app"]
