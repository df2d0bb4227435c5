"""Configuration history in the admin: every version with its diff, filtered by object or
author, and "Restore this version" (a confirmation page with the diff it will apply, then one
transaction, recorded as a new version)."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from agents.transfer import ImportRejected
from versions.diff import ObjectChange, config_diff, value_text
from versions.document import config_export
from versions.models import Source, Version, VersionObject
from versions.restore import config_import


class ObjectFilter(admin.SimpleListFilter):
    """Versions that touched one object (an agent, a tenant, an API key): `?object=agent:cita`."""

    title = "object"
    parameter_name = "object"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = VersionObject.objects.order_by("kind", "label").values_list("kind", "ident",
                                                                            "label").distinct()  # fmt: skip
        seen: dict[str, str] = {}
        for kind, ident, label in rows:
            seen.setdefault(f"{kind}:{ident}", f"{kind} {label}")
        return list(seen.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Version]) -> QuerySet[Version]:
        value = self.value()
        if not value or ":" not in value:
            return queryset
        kind, ident = value.split(":", 1)
        return queryset.filter(touched__kind=kind, touched__ident=ident).distinct()


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = ["number", "created_at", "author", "source", "summary"]
    list_display_links = ["number", "summary"]
    list_filter = [ObjectFilter, "source", "author"]
    search_fields = ["summary", "author"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # versions are read-only; restoring needs versions.change_version

    @admin.display(description="version", ordering="id")
    def number(self, version: Version) -> str:
        return format_html("#{}", version.pk)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:version_id>/restore/", view(self.restore_view),
                 name="versions_version_restore"),
            *super().get_urls(),
        ]  # fmt: skip

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        version = self._version(request, object_id)
        context = {
            **self._context(request, version, f"Version #{version.pk}"),
            "changes": _readable(version.changes),
            "may_restore": self._may_restore(request),
            "newer": Version.objects.filter(pk__gt=version.pk).count(),
        }
        return TemplateResponse(request, "admin/versions/version/detail.html", context)

    def restore_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        if not self._may_restore(request):
            raise PermissionDenied
        version = self._version(request, str(version_id))
        if request.method == "POST":
            return self._restore(request, version)
        context = {
            **self._context(request, version, f"Restore version #{version.pk}?"),
            "changes": _readable(config_diff(config_export(), version.document)),
        }
        return TemplateResponse(request, "admin/versions/version/restore.html", context)

    def _restore(self, request: HttpRequest, version: Version) -> HttpResponse:
        try:
            changes = config_import(
                version.document, prune=True, author=request.user.get_username(),
                source=Source.ROLLBACK, note=f"restored version #{version.pk}",
            )  # fmt: skip
        except ImportRejected as exc:
            for line in exc.errors:
                self.message_user(request, line, messages.ERROR)
            return HttpResponseRedirect(request.path)
        if not changes:
            self.message_user(request, "Nothing to restore: the configuration is already that "
                              "version.", messages.INFO)  # fmt: skip
            return HttpResponseRedirect(reverse("admin:versions_version_changelist"))
        latest = Version.objects.order_by("-id").first()
        assert latest is not None
        self.message_user(
            request,
            f"Restored version #{version.pk} as version #{latest.pk} ({len(changes)} object(s) "
            "changed); every worker follows within 2 s.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:versions_version_change", args=[latest.pk]))

    def _version(self, request: HttpRequest, object_id: str) -> Version:
        if not self.has_view_permission(request):
            raise PermissionDenied
        version = Version.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        if version is None:
            raise Http404("No such version")
        return version

    def _may_restore(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("versions.change_version"))

    def _context(self, request: HttpRequest, version: Version, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "version": version,
            "opts": self.opts,
            "changelist_url": reverse("admin:versions_version_changelist"),
        }


def _readable(changes: list[ObjectChange]) -> list[dict[str, Any]]:
    """Changes with their values as JSON text (None stays None: no value on that side)."""
    return [
        {**change, "fields": [
            {"field": f["field"],
             "before": None if f["before"] is None and change["op"] == "created"
             else value_text(f["before"]),
             "after": None if f["after"] is None and change["op"] == "deleted"
             else value_text(f["after"])}
            for f in change["fields"]
        ]}
        for change in changes
    ]  # fmt: skip
