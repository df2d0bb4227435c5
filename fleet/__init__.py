"""Change propagation and fleet telemetry, a Django app: each worker follows configuration changes
(poll + Redis wake-ups), publishes its state for the admin, and sums live gauges across workers."""
