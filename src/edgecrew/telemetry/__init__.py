"""Observability of the server: Prometheus metrics, OpenTelemetry spans and structured JSON logs.

``metrics`` counts what the run store's events report and reads the model pool at scrape time;
``tracing`` holds the spans the engine opens (off unless an OTLP endpoint is configured);
``logging`` renders every log line as one redacted JSON object; ``http`` is the ASGI middleware
(access log, request metrics) and the ``/metrics`` route; ``server`` wires them into an app. The
submodules are imported on their own: the engine imports only ``tracing``, which stays light.
"""
