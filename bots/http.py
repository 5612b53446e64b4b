"""Transport-neutral HTTP values: what every host hands an ingress route, and gets back.

The local server and the API Gateway handler both translate to and from these, so one ingress
function serves both hosts unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        return cls(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    @classmethod
    def error(cls, status: int, message: str) -> HttpResponse:
        return cls.json(status, {"error": message})


Route = Callable[[HttpRequest], HttpResponse]


class LazyRoute:
    """A route built on its first request. One ingress function serves every platform, so a
    platform's heavy imports (botbuilder takes about half a second) must not land on another
    platform's cold start."""

    def __init__(self, build: Callable[[], Route]) -> None:
        self._build = build
        self._route: Route | None = None
        self._lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._route is None:
            with self._lock:
                if self._route is None:
                    self._route = self._build()
        return self._route(request)


class Routes:
    """(method, path) → route. Adapters add theirs at start-up; hosts only dispatch."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Route] = {}

    def add(self, method: str, path: str, route: Route) -> None:
        key = (method.upper(), path)
        if key in self._routes:
            raise ValueError(f"{method} {path} is already routed")
        self._routes[key] = route

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        route = self._routes.get((request.method.upper(), request.path))
        if route is not None:
            return route(request)
        if any(path == request.path for _, path in self._routes):
            return HttpResponse.error(405, f"method {request.method} not allowed here")
        return HttpResponse.error(404, f"no route for {request.path}")

    @property
    def paths(self) -> list[str]:
        return sorted({f"{m} {p}" for m, p in self._routes})
