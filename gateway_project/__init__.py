"""The agent gateway: n8n workflows -> one JSON endpoint -> admin-managed AI agents."""

__version__ = "1.0.0"
