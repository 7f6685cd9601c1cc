"""HTTP semantics (RFC 9110) shared by every route, each decided in one place here:

- ``HEAD`` on any GET route answers as GET does, without the body (``HeadAsGet``);
- a 405 lists the methods its path allows in ``Allow`` (``allowed_methods``);
- ``If-None-Match`` is compared with a response's entity tag (``none_match``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_ENTITY_TAG = re.compile(r'(?:W/)?("[^"]*")')


class HeadAsGet:
    """ASGI middleware: a ``HEAD`` request runs as ``GET`` and its answer's body is dropped, so
    its status and headers (``Content-Length`` and ``ETag`` included) are the GET's (RFC 9110
    9.3.2). A path without a GET route answers 405 (or 404) as it would to GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the server reads the method of its own scope to know the answer has no body.
        inner = {**scope, "method": "GET"}

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(inner, receive, without_body)
        finally:
            if "route" in inner:  # for the metrics' route label, read from the outer scope
                scope["route"] = inner["route"]


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods of every route whose path template matches the request's path (for a 405's
    ``Allow``), ``HEAD`` wherever ``GET`` is; empty for paths served by a mounted app."""
    path = _route_path(scope)
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= {m.upper() for m in route.methods}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))


def _route_path(scope: Scope) -> str:
    """The path below the app's ``root_path`` (as Starlette's router matches it)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current representation, whose tag is ``etag``
    (RFC 9110 13.1.2): ``*`` names any, else a list of tags compared weakly (``W/"x"`` and
    ``"x"`` are the same). True means: answer 304 without a body."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag == wanted for tag in _ENTITY_TAG.findall(if_none_match))
