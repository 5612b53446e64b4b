"""Who the local host answers: its own clients, and nobody a web page sends its way.

API Gateway and the platforms' signatures protect the AWS host. On a laptop, any page the
developer opens can make the browser send requests to ``127.0.0.1``; these checks, made before
any route runs, keep such requests out:

1. **Host** must name this server: a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``),
   the address it is bound to, or a name in ``CHATBOT_ALLOWED_HOSTS`` (a tunnel), with any port
   (``ssh -L`` and ``docker -p`` change the port a client sees). Else 421: this stops DNS
   rebinding, where an attacker's name resolves to 127.0.0.1 and its page reads the answers.
2. **Origin**, when present (browsers send it on cross-site POSTs), must be this server's own,
   and ``Sec-Fetch-Site`` must not be ``cross-site``. Else 403. curl, Slack and Bot Framework
   send neither, so they pass.
3. **``/local/*``** needs the local token (``Authorization: Bearer <token>`` or
   ``X-Chatbot-Token``) unless the server is bound to loopback and reached by a loopback name.
   Else 401. The platform routes have their own authentication.
4. **The playground** (``/playground/*``, :mod:`bots.playground`) always needs this local
   token, on loopback too: it is a browser page, and the token in the URL ``chatbot serve``
   prints is what tells its requests from any other page's. A GET may carry it as ``?token=``
   (``EventSource`` cannot set headers). Else 401. Exempt: the page itself (``/``, static HTML
   with no data: it takes the token from its address, then drops it from the address bar and
   keeps it in the tab's sessionStorage, so a reload works), its static assets (no data), and
   the emulated Slack Web API, file
   downloads, ``response_url`` and Bot Framework connector
   (``/playground/teams/<secret>/v3/...``), which the bot's own clients call with what they
   would send to Slack or Teams (the emulators check it: the bot token, the per-run secret of
   the serviceUrl).
5. **Content types** on POST: JSON endpoints take ``application/json`` only, ``/slack/events``
   Slack's own two. Else 415: ``text/plain`` is what a cross-site form or ``fetch`` can send
   without a CORS preflight. One exception keeps the README's ``curl -d '{...}'`` working:
   ``/local/messages`` takes curl's default ``application/x-www-form-urlencoded`` from a client
   that is not a browser (no ``Origin``, no ``Sec-Fetch-Site``). A browser form cannot produce a
   JSON body in that encoding (``{`` and ``"`` are percent-encoded), and any browser that can
   send a raw body that way sends ``Origin`` with it.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bots.http import HttpRequest, HttpResponse

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# POST routes and the media types they take; other routes take what their route accepts.
CONTENT_TYPES: dict[str, frozenset[str]] = {
    "/local/messages": frozenset({JSON}),
    "/api/messages": frozenset({JSON}),
    "/slack/events": frozenset({JSON, FORM}),
}
_CURL_FORM_PATHS = frozenset({"/local/messages"})
PLAYGROUND = "/playground/"
# Called by the bot's own Slack and Bot Framework clients, never by the page.
PLAYGROUND_EMULATORS = (
    "/playground/slack/api/",
    "/playground/slack/files/",
    "/playground/slack/response/",
)
# The Bot Framework connector emulator: its serviceUrl carries a per-run secret segment.
PLAYGROUND_CONNECTOR = re.compile(r"/playground/teams/[A-Za-z0-9_-]+/v3/")
PLAYGROUND_STATIC = "/playground/static/"
_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::[0-9]{1,5})?")


def host_name(address: str) -> str:
    """An address as it appears in a Host header: IPv6 in brackets, lower case."""
    address = address.lower()
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HostGuard:
    """The checks above, for a server bound to ``bound_host:port``."""

    bound_host: str  # as in a Host header (see ``host_name``)
    port: int
    token: str = field(repr=False)  # this run's secret for ``/local/*``: never logged
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def for_address(
        cls, address: tuple[str, int], allowed_hosts: Iterable[str] = (), token: str | None = None
    ) -> HostGuard:
        """The guard of a server bound to ``address``, with a fresh token unless given one."""
        return cls(
            host_name(str(address[0])),
            int(address[1]),
            token or secrets.token_urlsafe(32),
            tuple(host_name(name) for name in allowed_hosts),
        )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bound_host)

    @property
    def needs_token(self) -> bool:
        """Whether any client can reach ``/local/*`` without being on this machine."""
        return not self.loopback or bool(self.allowed_hosts)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        """The refusal for ``request``, or None when it may go on to its route."""
        match = _HOST.fullmatch(request.header("host").strip().lower())
        if match is None:
            return HttpResponse.error(400, "a request needs one valid Host header")
        name = match["name"]
        own = LOOPBACK_NAMES | {self.bound_host}
        if name not in own and name not in self.allowed_hosts:
            return HttpResponse.error(
                421,
                f"this server does not answer for host {name!r}: "
                "add it to CHATBOT_ALLOWED_HOSTS if it should",
            )
        origin = request.header("origin")
        if origin and not self._own_origin(origin, own):
            return HttpResponse.error(403, "cross-origin requests are not accepted")
        if request.header("sec-fetch-site").strip().lower() == "cross-site":
            return HttpResponse.error(403, "cross-site requests are not accepted")
        if _is_playground_page(request.path) and not self._has_token(request, query=True):
            return HttpResponse.json(
                401,
                {
                    "error": "the playground needs the local token: open the URL chatbot serve "
                    "printed at start (http://127.0.0.1:<port>/?token=...)"
                },
                {"WWW-Authenticate": "Bearer"},
            )
        local = request.path == "/local" or request.path.startswith("/local/")
        reached_locally = self.loopback and name in own
        if local and not reached_locally and not self._has_token(request):
            return HttpResponse.json(
                401,
                {
                    "error": "/local/* needs the token chatbot serve printed at start "
                    "(Authorization: Bearer <token>)"
                },
                {"WWW-Authenticate": "Bearer"},
            )
        return self._check_content_type(request)

    def _own_origin(self, origin: str, own: frozenset[str]) -> bool:
        parts = urlsplit(origin.strip().lower())
        try:
            port = parts.port
        except ValueError:
            return False
        if parts.path.strip("/") or parts.query or not parts.hostname:
            return False
        name = host_name(parts.hostname)
        if name in own:
            return parts.scheme == "http" and port == self.port
        return name in self.allowed_hosts and parts.scheme in ("http", "https")

    def _has_token(self, request: HttpRequest, *, query: bool = False) -> bool:
        """``query``: a GET may also carry the token as ``?token=``."""
        scheme, _, credential = request.header("authorization").strip().partition(" ")
        given = credential.strip() if scheme.lower() == "bearer" else ""
        given = given or request.header("x-chatbot-token").strip()
        if query and not given and request.method.upper() == "GET":
            given = request.query.get("token", "").strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _check_content_type(self, request: HttpRequest) -> HttpResponse | None:
        accepted = CONTENT_TYPES.get(request.path)
        if accepted is None and _is_playground_page(request.path):
            accepted = frozenset({JSON})
        if request.method.upper() != "POST" or accepted is None:
            return None
        media_type = request.header("content-type").split(";", 1)[0].strip().lower()
        if media_type in accepted:
            return None
        browser = request.header("origin") or request.header("sec-fetch-site")
        if media_type == FORM and request.path in _CURL_FORM_PATHS and not browser:
            return None  # curl -d '{...}': not a browser, see the module docstring
        return HttpResponse.error(
            415, f"{request.path} takes {' or '.join(sorted(accepted))}, not {media_type or 'none'}"
        )


def _is_playground_page(path: str) -> bool:
    """What the page calls: ``/playground/*`` but the emulators and the assets."""
    if not (path == PLAYGROUND.rstrip("/") or path.startswith(PLAYGROUND)):
        return False
    if PLAYGROUND_CONNECTOR.match(path):
        return False
    return not path.startswith((*PLAYGROUND_EMULATORS, PLAYGROUND_STATIC))
