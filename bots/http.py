"""Transport-neutral HTTP values: what every host hands an ingress route, and gets back.

The local server and the API Gateway handler both translate to and from these, so one ingress
function serves both hosts unchanged.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
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
    """``stream``: a long-lived answer (Server-Sent Events), written chunk by chunk as it yields
    and the connection closed after; only the local host serves one (the Lambda handler has no
    route that returns it). ``body`` is then ignored."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None

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
    """(method, path) → route. Adapters add theirs at start-up; hosts only dispatch.

    A path ending in ``/`` added with ``prefix=True`` serves every path under it (the local
    host's emulators take ``/playground/slack/api/<method>``); an exact path wins over a
    prefix, and a longer prefix over a shorter one. ``max_body`` lets a route take bodies
    larger than the host's default limit (file uploads); hosts ask :meth:`max_body`.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Route] = {}
        self._prefixes: dict[tuple[str, str], Route] = {}
        self._max_body: dict[tuple[str, str], int] = {}

    def add(
        self,
        method: str,
        path: str,
        route: Route,
        *,
        prefix: bool = False,
        max_body: int | None = None,
    ) -> None:
        key = (method.upper(), path)
        table = self._prefixes if prefix else self._routes
        if prefix and not path.endswith("/"):
            raise ValueError(f"a prefix route ends with '/': {path}")
        if key in table:
            raise ValueError(f"{method} {path} is already routed")
        table[key] = route
        if max_body is not None:
            self._max_body[key] = max_body

    def max_body(self, method: str, path: str) -> int | None:
        """The body limit the route for (method, path) asked for, if it asked for one."""
        found = self._find(method, path)
        return None if found is None else self._max_body.get(found[0])

    def _find(self, method: str, path: str) -> tuple[tuple[str, str], Route] | None:
        key = (method.upper(), path)
        route = self._routes.get(key)
        if route is not None:
            return key, route
        best: tuple[tuple[str, str], Route] | None = None
        for (m, p), candidate in self._prefixes.items():
            if m == key[0] and path.startswith(p) and (best is None or len(p) > len(best[0][1])):
                best = (m, p), candidate
        return best

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        """The route's response. Routes map the errors they can name to statuses themselves;
        anything else is a bug, answered with a plain 500 and logged with the path and the
        stack (never the body, nor the exception's message, which may quote it). Hosts bind
        the request id to every log line."""
        found = self._find(request.method, request.path)
        route = None if found is None else found[1]
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
        if any(path == request.path for _, path in self._routes) or any(
            request.path.startswith(path) for _, path in self._prefixes
        ):
            return HttpResponse.error(405, f"method {request.method} not allowed here")
        return HttpResponse.error(404, f"no route for {request.path}")

    @property
    def paths(self) -> list[str]:
        exact = {f"{m} {p}" for m, p in self._routes}
        return sorted(exact | {f"{m} {p}*" for m, p in self._prefixes})
