"""Admin pages for tenants (empresas): whether each is served, its limits and its own routes."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from agents.models import Tenant, TenantAgentLimit, TenantRoute
from console.live_columns import PublishedState
from console.recorded import RecordedChanges
from fleet.worker_state import TenantFleetView, fleet_tenants_status

_fleet: PublishedState[int, TenantFleetView] = PublishedState("tenants", fleet_tenants_status)


class TenantAgentLimitInline(admin.TabularInline):
    model = TenantAgentLimit
    extra = 0
    fields = ["agent", "max_concurrency"]
    autocomplete_fields = ["agent"]


class TenantRouteInline(admin.TabularInline):
    model = TenantRoute
    extra = 1
    fields = ["name", "agent"]
    autocomplete_fields = ["agent"]


@admin.register(Tenant)
class TenantAdmin(RecordedChanges, admin.ModelAdmin):
    """Saving propagates to every worker like an agent edit (agents/signals.py)."""

    list_display = ["id_empresa", "name", "enabled", "max_concurrency", "requests_per_minute",
                    "routes_list", "inflight_column", "traffic_column"]  # fmt: skip
    list_display_links = ["id_empresa", "name"]
    list_editable = ["enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "=id_empresa"]
    fields = ["id_empresa", "name", "enabled", "max_concurrency", "requests_per_minute"]
    inlines = [TenantRouteInline, TenantAgentLimitInline]
    version_kind = "tenant"

    def version_ident(self, obj: Tenant) -> str:
        return str(obj.id_empresa)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).prefetch_related("routes__agent")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return _fleet.around_page(
            lambda: super(TenantAdmin, self).changelist_view(request, extra_context)
        )

    @admin.display(description="in flight")
    def inflight_column(self, tenant: Tenant) -> str:
        view = _fleet.get(tenant.id_empresa)
        if view is None:  # idle in every worker (workers publish only active empresas)
            return "0"
        return f"{view.inflight} / {view.limit}" if view.limit is not None else str(view.inflight)

    @admin.display(description="last 5 min")
    def traffic_column(self, tenant: Tenant) -> str:
        view = _fleet.get(tenant.id_empresa)
        if view is None or view.fallback_ratio is None:
            return "no requests"
        return f"{view.requests_5m} req, {view.fallback_ratio:.0%} fallback"

    @admin.display(description="own routes")
    def routes_list(self, tenant: Tenant) -> str:
        return ", ".join(f"{r.name} → {r.agent.key}" for r in tenant.routes.all()) or "—"
