"""The agents admin: thin; writes go through agents.services."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from agents.keys import key_generate
from agents.models import Agent, ApiKey, RoutingName, normalize_routing_name
from agents.services import agent_set_enabled, api_key_set_secret


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are generated here and shown once, on the page that follows "Save"; only their
    SHA-256 digest and a short prefix are stored."""

    list_display = ["name", "prefix", "enabled", "allowed_agents_list", "requests_per_minute",
                    "last_used_at", "created_at"]  # fmt: skip
    list_editable = ["enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["allowed_agents"]
    fields = ["name", "prefix", "enabled", "allowed_agents", "requests_per_minute",
              "last_used_at", "created_at"]  # fmt: skip
    readonly_fields = ["prefix", "last_used_at", "created_at"]
    actions = ["revoke_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return super().get_queryset(request).prefetch_related("allowed_agents")

    @admin.display(description="allowed agents")
    def allowed_agents_list(self, api_key: ApiKey) -> str:
        return ", ".join(a.key for a in api_key.allowed_agents.all()) or "all"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            plain = key_generate()
            api_key_set_secret(obj, plain)
            request._plain_api_key = plain  # type: ignore[attr-defined]  # read by response_add
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None):
        plain = getattr(request, "_plain_api_key", None)
        if plain is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "api_key": obj,
            "plain_key": plain,
            "changelist_url": reverse("admin:agents_apikey_changelist"),
            "opts": self.opts,
        }
        response: HttpResponse = TemplateResponse(
            request, "admin/agents/apikey/key_created.html", context
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(enabled=True):
            api_key.enabled = False
            api_key.save(update_fields=["enabled"])
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
