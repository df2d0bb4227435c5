"""Why an agent call did not produce a reply.

Each error carries `reason`, the contract's `error_type` label (also sent to n8n as the
`X-Gateway-Fallback` header), and `counts_as_failure`, whether the circuit breaker sees it as a
failure of the agent::

    AgentError
    ├── AgentUnavailableError        no call was attempted
    │   ├── AgentDisabledError           disabled          (fallback; neutral)
    │   ├── BreakerOpenError             circuit_open      (fallback; neutral)
    │   └── AgentBusyError               backpressure      (503; neutral)
    ├── StreamDrainedError           draining          (a stream ended by the drain; neutral)
    └── AgentCallError               the call was attempted and failed
        ├── AgentTimeoutError            timeout           (failure)
        ├── AgentConnectionError         connection        (failure)
        │   └── RetryableConnectionError     no response byte came back (may be retried)
        │       └── NotSentConnectionError       the request never left
        ├── AgentBadStatusError          bad_status        (5xx failure; 4xx neutral)
        ├── AgentDecodeError             decode            (failure)
        └── AgentResponseTooLargeError   too_large         (failure)
"""


class AgentError(Exception):
    reason = "error"
    counts_as_failure = False


class AgentUnavailableError(AgentError):
    pass


class AgentDisabledError(AgentUnavailableError):
    reason = "disabled"


class BreakerOpenError(AgentUnavailableError):
    reason = "circuit_open"


class AgentBusyError(AgentUnavailableError):
    reason = "backpressure"


class StreamDrainedError(AgentError):
    """The process is shutting down and its drain limit came before the stream's end."""

    reason = "draining"


class AgentCallError(AgentError):
    counts_as_failure = True


class AgentTimeoutError(AgentCallError):
    reason = "timeout"


class AgentConnectionError(AgentCallError):
    reason = "connection"


class RetryableConnectionError(AgentConnectionError):
    """Refused, or reset or closed before any response byte: the agent sent nothing back, but
    it may have received the request (retried under `retry_on=connect_or_reset`)."""


class NotSentConnectionError(RetryableConnectionError):
    """The request cannot have reached the agent: the connection was refused or never made, or
    a kept-alive connection was found closed before the request was written (retried under
    either `retry_on`)."""


class AgentBadStatusError(AgentCallError):
    reason = "bad_status"

    def __init__(self, status_code: int) -> None:
        super().__init__(f"agent answered HTTP {status_code}")
        self.status_code = status_code
        # A 4xx means our request was refused, not that the agent is down.
        self.counts_as_failure = status_code >= 500


class AgentDecodeError(AgentCallError):
    reason = "decode"


class AgentResponseTooLargeError(AgentCallError):
    reason = "too_large"
