"""The API keys admin: a key is generated on "Save" and shown once; revoking is one click;
rotating issues a new key (shown once) while the old one stays valid for a grace period."""

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_value, unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from access.keys import key_generate
from access.models import ApiKey
from access.services import ROTATE_REVOKED, api_key_rotate, api_key_rotated_name, api_key_set_secret
from console.recorded import RecordedChanges

NEVER = "never"
EXPIRED = "expired"
GRACE_CHOICES = [
    (0, "No grace: the old key stops now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (604800, "7 days"),
]


class ApiKeyRotateForm(forms.Form):
    grace_s = forms.TypedChoiceField(
        label="The old key keeps working for",
        choices=GRACE_CHOICES,
        coerce=int,
        initial=86400,
        widget=forms.RadioSelect,
        help_text="Never beyond an expiry it already has.",
    )
    name = forms.CharField(label="Name of the new key", max_length=100)

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if ApiKey.objects.filter(name=name).exists():
            raise forms.ValidationError("A key with this name exists; choose another.")
        return name


@admin.register(ApiKey)
class ApiKeyAdmin(RecordedChanges, admin.ModelAdmin):
    """Keys are generated here and shown once, on the page that follows "Save" or "Rotate";
    only their SHA-256 digest and a short prefix are stored."""

    list_display = ["name", "prefix", "enabled", "expires_column", "allowed_agents_list",
                    "empresas", "requests_per_minute", "last_used_column", "created_at"]  # fmt: skip
    list_editable = ["enabled"]
    list_filter = ["enabled"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["allowed_agents"]
    fields = ["name", "prefix", "enabled", "expires_at", "allowed_agents", "empresas",
              "requests_per_minute", "last_used_at", "created_at"]  # fmt: skip
    readonly_fields = ["prefix", "last_used_at", "created_at"]
    actions = ["revoke_selected", "rotate_selected"]
    version_kind = "api_key"

    def version_ident(self, obj: ApiKey) -> str:
        return obj.key_hash

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        return super().get_queryset(request).prefetch_related("allowed_agents")

    @admin.display(description="allowed agents")
    def allowed_agents_list(self, api_key: ApiKey) -> str:
        return ", ".join(a.key for a in api_key.allowed_agents.all()) or "all"

    @admin.display(description="expires", ordering="expires_at")
    def expires_column(self, api_key: ApiKey) -> str:
        if api_key.expires_at is None:
            return NEVER
        when = display_for_value(api_key.expires_at, NEVER)
        if api_key.is_expired():
            return format_html('<strong class="key-expired">{}</strong> ({})', EXPIRED, when)
        return when

    @admin.display(description="last used", ordering="last_used_at", empty_value=NEVER)
    def last_used_column(self, api_key: ApiKey) -> datetime | None:
        return api_key.last_used_at

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
        return self._key_shown_once(request, obj, plain, title="API key created")

    def _key_shown_once(
        self, request: HttpRequest, obj: ApiKey, plain: str, *, title: str, **extra: Any
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "api_key": obj,
            "plain_key": plain,
            "changelist_url": reverse("admin:access_apikey_changelist"),
            "opts": self.opts,
            **extra,
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

    @admin.action(description="Rotate the selected key…")
    def rotate_selected(
        self, request: HttpRequest, queryset: QuerySet[ApiKey]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select one key to rotate.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:access_apikey_rotate", args=[queryset[0].pk]))

    # -- rotation ------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/rotate/",
                view(self.recorded(self.rotate_view)),
                name="access_apikey_rotate",
            ),
            *super().get_urls(),
        ]

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A form (grace period, new name); on submit, the new key shown once."""
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            raise Http404("No such API key.")
        if not (self.has_change_permission(request, api_key) and self.has_add_permission(request)):
            raise PermissionDenied
        form = ApiKeyRotateForm(
            request.POST or None, initial={"name": api_key_rotated_name(api_key.name)}
        )
        if request.method == "POST" and form.is_valid():
            try:
                new, plain = api_key_rotate(
                    api_key=api_key,
                    grace=timedelta(seconds=form.cleaned_data["grace_s"]),
                    name=form.cleaned_data["name"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self._log_rotation(request, api_key, new)
                return self._key_shown_once(
                    request, new, plain, title="API key rotated", rotated_from=api_key
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate {api_key.name}",
            "api_key": api_key,
            "revoked": not api_key.enabled,
            "revoked_message": ROTATE_REVOKED,
            "form": form,
            "opts": self.opts,
            "change_url": reverse("admin:access_apikey_change", args=[api_key.pk]),
        }
        return TemplateResponse(request, "admin/access/apikey/rotate_form.html", context)

    def _log_rotation(self, request: HttpRequest, old: ApiKey, new: ApiKey) -> None:
        expires = (
            timezone.localtime(old.expires_at).isoformat(timespec="seconds")
            if old.expires_at
            else NEVER
        )
        self.log_change(request, old, f"Rotated: replaced by {new.name}; expires {expires}.")
        self.log_addition(request, new, f"Created by rotating {old.name}.")
