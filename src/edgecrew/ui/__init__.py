"""Mission control: server-rendered pages (Jinja2) with live parts over SSE (htmx), served at ``/``.

Every script and stylesheet ships in ``static/`` (htmx and its SSE extension are vendored), so the
UI works offline and needs no Node. Pages read the same services as the CLI and the API.
"""
