"""Transport-neutral HTTP values: what every host hands an ingress route, and gets back.

The local server and the API Gateway handler both translate to and from these, so one ingress
function serves both hosts unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64  # Slack's and Bot Framework's payloads nest about a dozen levels


class MalformedJson(ValueError):
    """A body that is not JSON this service will read: not UTF-8, not JSON, nested deeper
    than :data:`MAX_JSON_DEPTH`, or holding an integer Python will not convert."""


def parse_json(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, or MalformedJson. Bounded: ``json`` raises RecursionError on
    deep nesting (or returns a value deep enough to break recursive code later, such as msrest's
    deserializer) and ValueError for an integer over 4,300 digits; both are refusals here."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedJson("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int over 4,300 digits
        raise MalformedJson(f"not JSON: {type(exc).__name__}") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise MalformedJson(f"JSON nested over {MAX_JSON_DEPTH} levels")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar: 0), measured without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
        """The route's response. Routes map the errors they can name to statuses themselves;
        anything else is a bug, answered with a plain 500 and logged with the path and the
        stack (never the body, nor the exception's message, which may quote it). Hosts bind
        the request id to every log line."""
        route = self._routes.get((request.method.upper(), request.path))
        if route is not None:
            try:
                return route(request)
            except Exception as exc:  # noqa: BLE001 - the last guard: no request may crash a host
                log.error(
                    "route failed: unexpected error",
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "error_type": type(exc).__name__,
                        "stack": "".join(traceback.format_tb(exc.__traceback__)),
                    },
                )
                return HttpResponse.error(500, "internal error")
        if any(path == request.path for _, path in self._routes):
            return HttpResponse.error(405, f"method {request.method} not allowed here")
        return HttpResponse.error(404, f"no route for {request.path}")

    @property
    def paths(self) -> list[str]:
        return sorted({f"{m} {p}" for m, p in self._routes})
