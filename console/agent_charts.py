"""Each agent's last hour as three charts (requests/min, p95 latency, fallback ratio) from what
the serving workers publish (fleet.worker_state.fleet_series): a column of the agent list, a
panel on the agent's page (AgentChartsMixin) and the rows of the fleet dashboard."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString

from agents.models import Agent
from console.charts import (
    LARGE,
    SMALL,
    Chart,
    ChartSize,
    chart_svg,
    charts_row,
    count_text,
    ms_text,
    ratio_text,
)
from console.live_columns import PublishedState
from fleet.series import HOUR_MINUTES, HourView
from fleet.worker_state import fleet_series

REQUESTS_COLOR = "#2f6fb3"
LATENCY_COLOR = "#8a4fb3"
FALLBACK_COLOR = "#c0392b"

_series: PublishedState[str, HourView] = PublishedState("series", fleet_series)


def agent_charts(
    view: HourView | None, size: ChartSize = SMALL, *, stacked: bool = False
) -> SafeString:
    """The three charts of one agent; without requests in the hour, three flat "no traffic"."""
    total = sum(view.requests) if view is not None else 0
    if view is None or not total:
        nothing: list[float | None] = [None] * HOUR_MINUTES
        requests: list[float | None] = nothing
        p95, ratio = nothing, nothing
        hour_p95, fallbacks = None, 0
    else:
        requests = list(view.requests)
        p95, ratio = view.p95_ms, view.fallback_ratio
        hour_p95, fallbacks = view.hour_p95_ms, sum(view.fallbacks)
    charts = [
        Chart("requests/min", requests, count_text, REQUESTS_COLOR, f"total {total}"),
        Chart("p95 latency", p95, ms_text, LATENCY_COLOR,
              f"p95 over the hour {ms_text(hour_p95)}" if hour_p95 is not None else ""),
        Chart("fallback ratio", ratio, ratio_text, FALLBACK_COLOR,
              f"{fallbacks} of {total} fallbacks" if total else ""),
    ]  # fmt: skip
    return charts_row((chart_svg(chart, size) for chart in charts), stacked=stacked)


class AgentChartsMixin(admin.ModelAdmin):
    """For the agent admin: `charts_column` in `list_display` (the published series read once
    per page) and `charts_panel` in `readonly_fields`."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return _series.around_page(
            lambda: super(AgentChartsMixin, self).changelist_view(request, extra_context)
        )

    @admin.display(description="last hour")
    def charts_column(self, agent: Agent) -> SafeString:
        return agent_charts(_series.get(agent.key), stacked=True)  # a narrow column

    @admin.display(description="every live worker")
    def charts_panel(self, agent: Agent) -> SafeString | str:
        if agent.pk is None:
            return "–"
        return agent_charts(fleet_series().get(agent.key), LARGE)
