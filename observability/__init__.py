"""What every room logs and traces with: the request's context (request id, caller, agent,
outcome), the JSON log lines that carry it, and the caller's W3C trace context."""
