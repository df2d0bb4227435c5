"""The chat endpoint: one pipeline from (headers, body, client address) to the contract's answer,
with the ninja operation and the ASGI fast lane as its two thin entry points."""
