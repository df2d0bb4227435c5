"""Health and metrics endpoints (/health, /health/live, /health/ready, /metrics), agent probes and
the admin's on-demand checks; they read the runtime and the fleet, never change them."""
