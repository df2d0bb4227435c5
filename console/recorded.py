"""Admin writes as configuration versions: each save (inline rows included), deletion, list
action or custom form is one transaction and one version, by the signed-in user; and an
object's "History" page lists the versions that touched it."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from versions.models import Source, Version
from versions.recording import recording


@contextmanager
def admin_recording(request: HttpRequest) -> Iterator[None]:
    with transaction.atomic(), recording(author=request.user.get_username(), source=Source.ADMIN):
        yield


class RecordedChanges:
    """Mix into a ModelAdmin (first). `version_kind` names the objects in versions (diff.KINDS);
    `version_ident` gives an object's identity there."""

    version_kind = ""
    object_history_template = "admin/versions/object_history.html"
    # List actions that wait on agents with the database connection released (not one
    # transaction; they change no configuration).
    unrecorded_actions: tuple[str, ...] = ("check_health", "send_test_message")

    def version_ident(self, obj: Any) -> str:
        raise NotImplementedError

    def recorded(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """Wrap a custom admin view that writes configuration."""

        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                return view(request, *args, **kwargs)
            with admin_recording(request):
                return view(request, *args, **kwargs)

        return wrapped

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.recorded(super().changeform_view)(request, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.recorded(super().delete_view)(request, *args, **kwargs)  # type: ignore[misc]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        view = super().changelist_view  # type: ignore[misc]
        if request.POST.get("action") in self.unrecorded_actions:
            return view(request, extra_context)
        return self.recorded(view)(request, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None):
        """Django's change history, followed by the configuration versions that touched the
        object, each with its diff a click away."""
        obj = self.get_object(request, object_id)  # type: ignore[attr-defined]
        context = dict(extra_context or {})
        if obj is not None:
            ident = self.version_ident(obj)
            context["versions"] = Version.objects.filter(
                touched__kind=self.version_kind, touched__ident=ident
            ).distinct()[:50]
            query = urlencode({"object": f"{self.version_kind}:{ident}"})
            context["versions_url"] = f"{reverse('admin:versions_version_changelist')}?{query}"
        return super().history_view(request, object_id, context)  # type: ignore[misc]
