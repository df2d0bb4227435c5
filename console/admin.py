"""The admin pages, registered when Django's admin autodiscovers this module."""

from django.contrib import admin

from console import agents_admin, fleet_dashboard, keys_admin, tenants_admin, versions_admin

fleet_dashboard.register(admin.site)

__all__ = ["agents_admin", "fleet_dashboard", "keys_admin", "tenants_admin", "versions_admin"]
