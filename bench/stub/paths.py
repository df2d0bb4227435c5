"""The stub agent's paths and their answer delays (shared by the nginx and asyncio stubs)."""

REPLY = b'{"reply":"ok","url":null}'

STUB_PATHS = {
    "/instant": 0.0,
    "/delay50ms": 0.05,
    "/delay5s": 5.0,
    "/hold": 120.0,  # keeps one call in flight (the backpressure scenario)
}
