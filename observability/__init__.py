"""What every room logs and traces with: the request's context (request id, caller, agent,
outcome), the JSON log lines that carry it, the caller's W3C trace context, and tracing
(OpenTelemetry, loaded only when it is on: tracing.py)."""
