"""The ASGI edge: request ids, body limits and timeouts, disconnects, header deadlines, the access
log, counting every chat answer, lifespan, and the uvicorn wrapper that serves it all."""
