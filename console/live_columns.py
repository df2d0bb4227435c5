"""Change lists with live columns: what the serving processes published (fleet/worker_state.py),
read once per page rather than once per row."""

import contextvars
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from django.http import HttpResponse

K = TypeVar("K")
V = TypeVar("V")


class PublishedState(Generic[K, V]):
    """The workers' published state for one change-list page: `around_page` reads it once with
    `read`, renders the page, and forgets it; `get` answers a row's key meanwhile."""

    def __init__(self, name: str, read: Callable[[], Mapping[K, V]]) -> None:
        self._current: contextvars.ContextVar[Mapping[K, V]] = contextvars.ContextVar(name)
        self._read = read

    def get(self, key: K) -> V | None:
        return self._current.get({}).get(key)

    def around_page(self, render: Callable[[], Any]) -> HttpResponse:
        token = self._current.set(self._read())
        try:
            response = render()
            if hasattr(response, "render"):  # render the template while the state is set
                response.render()
            return response  # type: ignore[no-any-return]
        finally:
            self._current.reset(token)
