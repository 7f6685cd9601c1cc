"""API keys and JWTs with roles: ``admin`` manages, ``write`` sends data, ``read`` reads.

Keys come from ``API_KEYS`` (``role:key`` or, hashed at rest, ``role:sha256:<hex digest>``, comma
separated), or are HS256 JWTs signed with ``JWT_SECRET`` (32 bytes or more) whose ``role`` claim
names the role and whose ``exp`` has not passed (a token without ``exp`` is refused unless
``JWT_REQUIRE_EXP`` is false). A request sends one as ``Authorization: Bearer <key or token>``
or ``X-API-Key: <key>``. Roles nest: an admin may do everything, a writer may also read. With
neither keys nor a secret configured the service is open (a warning is logged at start-up).

Which role a route needs is decided here, in one table, from the route's path template: reads
(GET) need ``read``; the data-sending routes in ``WRITE_ROUTES`` need ``write``; every other
change needs ``admin`` (so a new route is closed until it is listed). Health checks, the API docs,
Prometheus metrics and the dashboard's page and files (which then call the API with the user's
key) are public, and so are FeatureVisor datafiles unless ``DATAFILES_PUBLIC`` is false.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from abpilot.domain.errors import AbpilotError

if TYPE_CHECKING:
    from abpilot.settings import Settings

log = logging.getLogger("abpilot.auth")


class Role(enum.IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


class Unauthorized(AbpilotError):
    code = "unauthorized"
    status_code = 401


class Forbidden(AbpilotError):
    code = "forbidden"
    status_code = 403


class AuthConfigError(ValueError):
    """API_KEYS or JWT settings that cannot be used (raised at start-up)."""


PUBLIC_ROUTES = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/dashboard"}
)
# The dashboard's page and static files are public; its data comes from the API, under the key
# the user pastes into it.
PUBLIC_PREFIXES = ("/docs", "/dashboard/")
DATAFILE_ROUTE = "/datafile/{path:path}"
WRITE_ROUTES = frozenset(
    {
        "/api/v1/experiments/{experiment_id}/assign",
        "/api/v1/experiments/{experiment_id}/exposures",
        "/api/v1/experiments/{experiment_id}/conversions",
        "/api/v1/experiments/{experiment_id}/convert",
        "/api/v1/experiments/conversions",
        "/api/v1/events",
        "/api/v1/experiments/{experiment_id}/metrics",
        "/api/v1/experiments/{experiment_id}/decide",
        "/api/v1/experiments/{experiment_id}/feedback",
        "/api/v1/experiments/{experiment_id}/interleave",
        "/api/v1/experiments/{experiment_id}/clicks",
        "/expose",
        "/convert",
        "/ofrep/v1/evaluate/flags/{key}",
        "/ofrep/v1/evaluate/flags",
    }
)


def required_role(method: str, route: str, *, datafiles_public: bool = True) -> Role | None:
    """The least role a request needs, or None for a public route."""
    if route in PUBLIC_ROUTES or route.startswith(PUBLIC_PREFIXES):
        return None
    if route == DATAFILE_ROUTE:
        return None if datafiles_public else Role.READ
    if method in {"GET", "HEAD", "OPTIONS"}:
        return Role.READ
    if route in WRITE_ROUTES:
        return Role.WRITE
    return Role.ADMIN


API_PREFIX = "/api/v1"


def route_template(scope: MutableMapping[str, Any]) -> str:
    """The matched route's full path template (``/api/v1/experiments/{experiment_id}``).
    Routers included with a prefix match relative paths; every prefixed router here is under
    ``/api/v1`` and every other route is at the root."""
    path = str(scope.get("path", ""))
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        return path
    if path.startswith(API_PREFIX + "/") and not str(route).startswith(API_PREFIX):
        return API_PREFIX + str(route)
    return str(route)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "abp_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Authenticator:
    keys: tuple[tuple[Role, str], ...] = field(repr=False)  # (role, sha256 hex of the key)
    jwt_secret: str | None = field(default=None, repr=False)
    datafiles_public: bool = True
    require_exp: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.keys) or self.jwt_secret is not None

    @classmethod
    def from_config(
        cls,
        api_keys: str | None,
        jwt_secret: str | None,
        *,
        datafiles_public: bool = True,
        require_exp: bool = True,
    ) -> Authenticator:
        keys = tuple(parse_keys(api_keys or ""))
        return cls(keys, jwt_secret or None, datafiles_public, require_exp)

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """From ``API_KEYS``, ``JWT_SECRET`` (its length is checked by the settings),
        ``JWT_REQUIRE_EXP`` and ``DATAFILES_PUBLIC``."""
        keys, secret = settings.api_keys, settings.jwt_secret
        return cls.from_config(
            keys.get_secret_value() if keys is not None else None,
            secret.get_secret_value() if secret is not None else None,
            datafiles_public=settings.datafiles_public,
            require_exp=settings.jwt_require_exp,
        )

    def role_of(self, credential: str) -> Role | None:
        digest = hash_key(credential)
        best: Role | None = None
        for role, known in self.keys:
            if hmac.compare_digest(digest, known) and (best is None or role > best):
                best = role
        if best is None and self.jwt_secret is not None and credential.count(".") == 2:
            best = self._jwt_role(credential)
        return best

    def _jwt_role(self, token: str) -> Role | None:
        secret = self.jwt_secret
        if secret is None:
            return None
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp"] if self.require_exp else []},
            )
        except jwt.PyJWTError:
            return None
        role = claims.get("role")
        if not isinstance(role, str) or role.upper() not in Role.__members__:
            return None
        return Role[role.upper()]

    def check(self, request: Request, credential: str | None) -> None:
        route = route_template(request.scope)
        needed = required_role(request.method, route, datafiles_public=self.datafiles_public)
        if needed is None or not self.enabled:
            return
        if not credential:
            raise Unauthorized(
                "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                field="authorization",
            )
        role = self.role_of(credential)
        if role is None:
            raise Unauthorized("the API key or token is not valid", field="authorization")
        if role < needed:
            raise Forbidden(
                f"this route needs the {needed.name.lower()} role; the key has {role.name.lower()}",
                field="authorization",
            )


def parse_keys(text: str) -> Iterable[tuple[Role, str]]:
    for i, entry in enumerate(p.strip() for p in text.split(",")):
        if not entry:
            continue
        role, _, secret = entry.partition(":")
        if role.upper() not in Role.__members__ or not secret:
            raise AuthConfigError(
                f"API_KEYS entry {i + 1} must be '<admin|write|read>:<key>' or "
                "'<role>:sha256:<hex digest>'"
            )
        if secret.startswith("sha256:"):
            digest = secret.removeprefix("sha256:").lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise AuthConfigError(f"API_KEYS entry {i + 1}: a sha256 digest is 64 hex digits")
            yield Role[role.upper()], digest
        else:
            yield Role[role.upper()], hash_key(secret)


_bearer = HTTPBearer(auto_error=False, description="An API key or an HS256 JWT with a role claim")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


async def authorize(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    api_key: str | None = Depends(_api_key),
) -> None:
    """The app-wide dependency: the route's role against the request's key. It runs on the
    event loop (``async``): the check is a hash or an HS256 signature, cheaper than the thread
    hand-off FastAPI makes for a plain ``def`` dependency."""
    authenticator: Authenticator = request.app.state.auth
    authenticator.check(request, bearer.credentials if bearer is not None else api_key)
