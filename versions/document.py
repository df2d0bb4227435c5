"""The whole configuration as one JSON document, `{"agents", "tenants", "api_keys"}`: what
`manage.py export_config` writes, what `import_config` restores (versions/restore.py), and what
each version stores. API keys appear as digests and prefixes, never as keys.
"""

from typing import Any

from access.transfer import api_keys_export
from agents.tenant_transfer import tenants_export
from agents.transfer import agents_export

SECTIONS = ("agents", "tenants", "api_keys")


def config_export() -> dict[str, Any]:
    """Agents, tenants and API keys (as digests), each ordered by its identity."""
    return {"agents": agents_export(), "tenants": tenants_export(), "api_keys": api_keys_export()}
