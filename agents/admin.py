"""The agents admin: thin; writes go through agents.services."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents.models import Agent, RoutingName, normalize_routing_name
from agents.services import agent_set_enabled


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


class RoutingNameInline(admin.TabularInline):
    model = RoutingName
    form = RoutingNameForm
    extra = 1
    fields = ["name"]


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "url", "enabled", "routing_names_list", "is_fallback_route"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "payload_format", "is_fallback_route"]
    search_fields = ["key", "name", "url", "routing_names__name"]
    inlines = [RoutingNameInline]
    actions = ["enable_selected", "disable_selected"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["key", "name", "url", "health_url", "enabled", "payload_format"]}),
        (
            "Limits",
            {
                "fields": [
                    "timeout_s",
                    "connect_timeout_s",
                    "max_concurrency",
                    "max_connections",
                    "retries",
                    "breaker_fail_max",
                    "breaker_reset_s",
                ]
            },
        ),
        ("Fallback", {"fields": ["fallback_reply", "is_fallback_route"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).prefetch_related("routing_names")

    @admin.display(description="routing names")
    def routing_names_list(self, agent: Agent) -> str:
        return ", ".join(r.name for r in agent.routing_names.all())

    @admin.action(description="Enable selected agents")
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        count = agent_set_enabled(keys=list(queryset.values_list("key", flat=True)), enabled=True)
        self.message_user(request, f"Enabled {count} agent(s).", messages.SUCCESS)

    @admin.action(description="Disable selected agents")
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        count = agent_set_enabled(keys=list(queryset.values_list("key", flat=True)), enabled=False)
        self.message_user(request, f"Disabled {count} agent(s).", messages.SUCCESS)
