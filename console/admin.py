"""The admin pages, registered when Django's admin autodiscovers this module."""

from console import agents_admin, keys_admin, tenants_admin

__all__ = ["agents_admin", "keys_admin", "tenants_admin"]
