"""The API keys admin: a key is generated on "Save" and shown once; revoking is one click."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from access.keys import key_generate
from access.models import ApiKey
from access.services import api_key_set_secret


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are generated here and shown once, on the page that follows "Save"; only their
    SHA-256 digest and a short prefix are stored."""

    list_display = ["name", "prefix", "enabled", "allowed_agents_list", "empresas",
                    "requests_per_minute", "last_used_at", "created_at"]  # fmt: skip
    list_editable = ["enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["allowed_agents"]
    fields = ["name", "prefix", "enabled", "allowed_agents", "empresas", "requests_per_minute",
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
            "changelist_url": reverse("admin:access_apikey_changelist"),
            "opts": self.opts,
        }
        response: HttpResponse = TemplateResponse(
            request, "admin/access/apikey/key_created.html", context
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
