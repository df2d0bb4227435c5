"""The agents admin: thin; writes go through agents.services."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.text import capfirst

from agents.models import Agent, AgentEndpoint, FailoverStep, RoutingName, normalize_routing_name
from agents.services import agent_set_enabled, breaker_reset_request
from agents.transfer import (
    HEADERS_FIELD,
    ROUTING_NAMES_FIELD,
    ImportRejected,
    agents_export,
    agents_import,
)
from console.agent_charts import AgentChartsMixin
from console.agent_credentials import (
    AgentCredentialsAdmin,
    AgentCredentialsForm,
    AgentHeaderInline,
)
from console.live_columns import PublishedState
from console.recorded import RecordedChanges
from fleet.worker_state import AgentFleetView, fleet_status
from health.on_demand import agents_check_health, agents_send_test_message

MAX_IMPORT_BYTES = 2 * 1024 * 1024
_fleet: PublishedState[str, AgentFleetView] = PublishedState("fleet", fleet_status)


class RoutingNameForm(forms.ModelForm):
    """Normalises before the formset compares rows, so "Citas" and "citas " in one form are
    reported as a duplicate instead of reaching the database's unique index."""

    class Meta:
        model = RoutingName
        fields = ["name"]

    def clean_name(self) -> str:
        name = normalize_routing_name(self.cleaned_data["name"])
        if not name:
            raise forms.ValidationError("Must not be empty or only spaces.")
        return name


class AgentImportForm(forms.Form):
    file = forms.FileField(help_text="A .json file: a list of agent objects.")
    dry_run = forms.BooleanField(
        required=False, initial=True, help_text="Check and report only; write nothing."
    )


class RoutingNameInline(admin.TabularInline):
    model = RoutingName
    form = RoutingNameForm
    extra = 1
    fields = ["name"]


class FailoverStepFormSet(forms.BaseInlineFormSet):
    """An agent's failover agents: never itself (reported on the row, before the database's
    check would refuse the save); an agent twice is the formset's own duplicate error."""

    def clean(self) -> None:
        super().clean()
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            target = form.cleaned_data.get("target")
            if target is not None and target.pk == self.instance.pk:
                form.add_error("target", "An agent cannot fail over to itself.")


class FailoverStepInline(admin.TabularInline):
    """Tried in order (lowest position first) when the agent fails: breaker open, disabled,
    busy, a connection failure or a 5xx (README, "Failover agents")."""

    model = FailoverStep
    fk_name = "agent"
    formset = FailoverStepFormSet
    extra = 0
    fields = ["target", "position"]
    ordering = ["position", "id"]


NO_URL_NOR_ENDPOINT = "Give the agent a URL, or at least one endpoint below."
URL_AND_ENDPOINTS = "Leave the URL blank when the agent has endpoints: they replace it."


class EndpointFormSet(forms.BaseInlineFormSet):
    """An agent needs its URL or at least one endpoint, not both. (An endpoint URL twice in one agent is
    the formset's own unique check: "Please correct the duplicate data for url.")"""

    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if not self._should_delete_form(form) and form.cleaned_data.get("url")
        ]
        if not kept and not self.instance.url:
            raise forms.ValidationError(NO_URL_NOR_ENDPOINT)
        if kept and self.instance.url:
            raise forms.ValidationError(URL_AND_ENDPOINTS)


class EndpointInline(admin.TabularInline):
    model = AgentEndpoint
    formset = EndpointFormSet
    extra = 0
    fields = ["position", "url", "weight", "enabled"]


@admin.register(Agent)
class AgentAdmin(RecordedChanges, AgentChartsMixin, AgentCredentialsAdmin, admin.ModelAdmin):
    form = AgentCredentialsForm
    list_display = [
        "key",
        "name",
        "url_column",
        "enabled",
        "routing_names_list",
        "breaker_column",
        "inflight_column",
        "traffic_column",
        "health_column",
        "charts_column",
    ]
    list_editable = ["enabled"]
    list_filter = ["enabled", "payload_format", "is_fallback_route", "tls_verify"]
    search_fields = ["key", "name", "url", "routing_names__name"]
    inlines = [RoutingNameInline, EndpointInline, AgentHeaderInline, FailoverStepInline]
    version_kind = "agent"
    actions = [
        "check_health",
        "send_test_message",
        "enable_selected",
        "disable_selected",
        "reset_breaker",
    ]
    readonly_fields = ["created_at", "updated_at", "charts_panel"]
    fieldsets = [
        (None, {"fields": ["key", "name", "url", "health_url", "enabled", "payload_format"]}),
        ("Last hour", {"fields": ["charts_panel"]}),
        (
            "Limits",
            {
                "fields": [
                    "timeout_s",
                    "connect_timeout_s",
                    "max_concurrency",
                    "max_connections",
                    "retries",
                    "retry_on",
                    "breaker_fail_max",
                    "breaker_reset_s",
                ]
            },
        ),
        ("Streaming", {"fields": ["stream_idle_timeout_s", "stream_max_s"]}),
        ("Endpoints (replicas)", {"fields": ["balance", "affinity"]}),
        ("Fallback", {"fields": ["fallback_reply", "is_fallback_route"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def version_ident(self, obj: Agent) -> str:
        return obj.key

    def get_fieldsets(self, request: HttpRequest, obj: Agent | None = None) -> Any:
        return [*super().get_fieldsets(request, obj), self.credentials_fieldset_for(obj)]

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self.tls_warn_on_save(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("routing_names", "endpoints")
            .select_related("health_result")
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        self.tls_warn_on_list(request)
        return _fleet.around_page(
            lambda: super(AgentAdmin, self).changelist_view(request, extra_context)
        )

    # -- live columns: what the serving processes published (fleet/worker_state.py) ----------

    def _fleet_view(self, agent: Agent) -> AgentFleetView | None:
        return _fleet.get(agent.key)

    @admin.display(description="breaker")
    def breaker_column(self, agent: Agent) -> str:
        view = self._fleet_view(agent)
        return view.breaker_summary if view else "no worker"

    @admin.display(description="in flight")
    def inflight_column(self, agent: Agent) -> str:
        view = self._fleet_view(agent)
        return f"{view.inflight} / {view.limit}" if view else "–"

    @admin.display(description="URL", ordering="url")
    def url_column(self, agent: Agent) -> str:
        """The agent's URL; for a pool, its endpoints that take calls ("2/3 up": enabled, and
        ejected in no live worker)."""
        endpoints = list(agent.endpoints.all())
        if not endpoints:
            return agent.url
        view = self._fleet_view(agent)
        ejected = view.ejected if view else set()
        up = sum(e.enabled and i not in ejected for i, e in enumerate(endpoints))
        return f"pool: {up}/{len(endpoints)} up"

    @admin.display(description="last 5 min")
    def traffic_column(self, agent: Agent) -> str:
        view = self._fleet_view(agent)
        if view is None or view.fallback_ratio is None:
            return "no requests"
        return f"{view.requests_5m} req, {view.fallback_ratio:.0%} fallback"

    @admin.display(description="last check")
    def health_column(self, agent: Agent) -> str:
        result = getattr(agent, "health_result", None)
        if result is None:
            return "never checked"
        latency = f", {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
        checked = timezone.localtime(result.checked_at).strftime("%H:%M:%S")
        return f"{result.status}{latency} at {checked}"

    @admin.display(description="routing names")
    def routing_names_list(self, agent: Agent) -> str:
        return ", ".join(r.name for r in agent.routing_names.all())

    @admin.action(description="Enable selected agents")
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected agents")
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Check health now")
    def check_health(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for result in agents_check_health(list(queryset.prefetch_related("routing_names"))):
            latency = f" in {result.latency_ms:.0f} ms" if result.latency_ms is not None else ""
            detail = f" ({result.detail})" if result.detail else ""
            level = messages.SUCCESS if result.healthy else messages.ERROR
            self.message_user(request, f"{result.key}: {result.status}{latency}{detail}", level)

    @admin.action(description="Send a test message")
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for probe in agents_send_test_message(list(queryset.prefetch_related("routing_names"))):
            if probe.ok:
                text = f"{probe.key} answered in {probe.latency_ms:.0f} ms: “{probe.reply[:300]}”"
                self.message_user(request, text, messages.SUCCESS)
            else:
                text = f"{probe.key} failed after {probe.latency_ms:.0f} ms: {probe.error[:300]}"
                self.message_user(request, text, messages.ERROR)

    @admin.action(description="Reset breaker (every worker)")
    def reset_breaker(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        keys = list(queryset.values_list("key", flat=True))
        breaker_reset_request(keys=keys)
        self.message_user(
            request,
            f"Breaker reset sent for {', '.join(keys)}; every worker applies it within 2 s.",
            messages.SUCCESS,
        )

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Agent], *, enabled: bool):
        agents = list(queryset.exclude(enabled=enabled))
        count = agent_set_enabled(keys=[a.key for a in agents], enabled=enabled)
        verb = "Enabled" if enabled else "Disabled"
        for agent in agents:  # the admin's history shows who did it, like an edit
            self.log_change(request, agent, _changed_message(["enabled"]))
        self.message_user(request, f"{verb} {count} agent(s).", messages.SUCCESS)

    # -- import / export (the JSON of manage.py import_agents / export_agents) -----------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.recorded(self.import_view)), name="agents_agent_import"),
            path("export/", view(self.export_view), name="agents_agent_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        response = JsonResponse(
            agents_export(), safe=False, json_dumps_params={"indent": 2, "ensure_ascii": False}
        )
        response["Content-Disposition"] = 'attachment; filename="agents.json"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            return HttpResponse(status=403)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Import agents",
            "opts": self.opts,
            "changelist_url": reverse("admin:agents_agent_changelist"),
        }
        form = AgentImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            dry_run = form.cleaned_data["dry_run"]
            try:
                rows = _read_upload(form.cleaned_data["file"])
                report = agents_import(rows, dry_run=dry_run)
            except ImportRejected as exc:
                context["errors"] = exc.errors
            else:
                context["report_lines"] = report.lines()
                context["dry_run"] = dry_run
                if not dry_run:
                    self._log_import(request, report.created, report.changed)
        context["form"] = form
        return TemplateResponse(request, "admin/agents/agent/import_form.html", context)

    def _log_import(self, request: HttpRequest, created: list[str], changed: dict) -> None:
        for agent in Agent.objects.filter(key__in=[*created, *changed]):
            if agent.key in created:
                self.log_addition(request, agent, [{"added": {}}])
            else:
                self.log_change(request, agent, _changed_message(changed[agent.key]))


def _changed_message(fields: list[str]) -> list[dict[str, Any]]:
    """A LogEntry change message naming fields by their labels, as the change form does."""
    labels = [
        "Routing names"
        if name == ROUTING_NAMES_FIELD
        else "Request headers"
        if name == HEADERS_FIELD
        else capfirst(Agent._meta.get_field(name).verbose_name)
        for name in fields
    ]
    return [{"changed": {"fields": labels}}]


def _read_upload(upload: Any) -> Any:
    if upload.size > MAX_IMPORT_BYTES:
        raise ImportRejected([f"the file is larger than {MAX_IMPORT_BYTES // 1024} KB"])
    try:
        return json.loads(upload.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRejected([f"the file is not valid JSON: {exc}"]) from exc
