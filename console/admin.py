"""The admin pages, registered when Django's admin autodiscovers this module."""

from console import agents_admin, keys_admin, tenants_admin, versions_admin

__all__ = ["agents_admin", "keys_admin", "tenants_admin", "versions_admin"]
