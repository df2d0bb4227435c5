"""The admin site, with its login protected against password guessing.

Failed logins are counted in the Django cache (shared by every worker when Redis is configured)
per username and per client IP over a sliding ADMIN_LOGIN_LOCKOUT_S; past the limit, further
attempts get a 429 page with Retry-After without checking the password, so guessing costs the
attacker the whole lockout whatever they try. A successful login clears the username's count.
If the cache is unreachable (Redis down), logins are checked without the lockout and a warning
is logged: admins can still get in to fix things.

Pages of the admin's own, not a model's (the fleet dashboard), are registered with
`register_page` by the module that draws them, as models are with `admin.register`; they get a
URL in the admin's namespace, the admin's login, and a link on the index and in the sidebar.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse

logger = logging.getLogger("gateway.admin")

_LOCKED_PAGE = (
    "<!doctype html><title>Too many attempts</title>"
    "<h1>Too many failed logins</h1><p>Try again in {minutes} minutes.</p>"
)


def _counter_keys(request: HttpRequest) -> list[tuple[str, int]]:
    username = str(request.POST.get("username", "")).strip().lower()[:150]
    client_ip = request.META.get("REMOTE_ADDR") or "unknown"
    return [
        (f"admin-login-fail:user:{username}", settings.ADMIN_LOGIN_MAX_FAILURES),
        (f"admin-login-fail:ip:{client_ip}", settings.ADMIN_LOGIN_MAX_FAILURES * 4),
    ]


def _count_attempt(keys: list[tuple[str, int]], *, succeeded: bool, lockout_s: int) -> None:
    if succeeded:
        cache.delete(keys[0][0])
        return
    for key, _limit in keys:
        cache.add(key, 0, lockout_s)
        cache.incr(key)
        cache.touch(key, lockout_s)


@dataclass(frozen=True)
class AdminPage:
    route: str  # under the admin's URL, e.g. "fleet/"
    name: str  # in the admin's namespace: reverse("admin:<name>")
    title: str  # its link on the index
    section: str  # the index's heading it is listed under
    permission: str  # needed to see it, e.g. "agents.view_agent"
    view: Callable[[HttpRequest], HttpResponse]


class GatewayAdminSite(admin.AdminSite):
    site_header = "Agent gateway"
    site_title = "Agent gateway admin"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[AdminPage] = []

    def register_page(self, page: AdminPage) -> None:
        self._pages.append(page)

    def get_urls(self) -> list[URLPattern | URLResolver]:
        pages = [path(p.route, self.admin_view(_guarded(p)), name=p.name) for p in self._pages]
        return [*pages, *super().get_urls()]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        app_list: list[Any] = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        sections: dict[str, dict[str, Any]] = {}
        for page in self._pages:
            if not request.user.has_perm(page.permission):
                continue
            url = reverse(f"admin:{page.name}", current_app=self.name)
            section = sections.setdefault(page.section, {
                "name": page.section, "app_label": page.section.lower().replace(" ", "_"),
                "app_url": url, "has_module_perms": True, "models": [],
            })  # fmt: skip
            section["models"].append({
                "name": page.title, "object_name": page.name, "perms": {"view": True},
                "admin_url": url, "add_url": None, "view_only": True,
            })  # fmt: skip
        return [*app_list, *sections.values()]

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        if request.method != "POST":
            return super().login(request, extra_context)
        keys = _counter_keys(request)
        lockout_s = settings.ADMIN_LOGIN_LOCKOUT_S
        try:
            locked = any(cache.get(key, 0) >= limit for key, limit in keys)
        except Exception:
            logger.warning("login lockout cache unreachable; not throttling", exc_info=True)
            return super().login(request, extra_context)
        if locked:
            response = HttpResponse(
                _LOCKED_PAGE.format(minutes=max(1, lockout_s // 60)), status=429
            )
            response["Retry-After"] = str(lockout_s)
            return response
        response = super().login(request, extra_context)
        try:
            _count_attempt(keys, succeeded=request.user.is_authenticated, lockout_s=lockout_s)
        except Exception:
            logger.warning("login lockout cache unreachable; attempt not counted", exc_info=True)
        return response


def _guarded(page: AdminPage) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(page.permission):
            raise PermissionDenied
        return page.view(request)

    return view


class GatewayAdminConfig(AdminConfig):
    default_site = "gateway_project.admin_site.GatewayAdminSite"
