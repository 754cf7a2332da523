"""The HTTP API: REST + SSE, the OpenAI-compatible gateway, auth, problem details, telemetry wiring.

The app that serves it together with mission control is composed in :mod:`edgecrew.app`.
"""
