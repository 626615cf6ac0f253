"""API keys: stored as SHA-256 hashes, scoped (ingest, read, admin), checked on every /v1 call."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trouw.domain.db.engine import read_scope
from trouw.domain.db.models import ApiKey
from trouw.ways_in.api.state import ApiState, api_state

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[str, ...] = get_args(Scope)
KEY_PREFIX = "trw_"
# A key is the prefix and 32 random bytes: nobody guesses it, so a fast hash is enough to store it
# (a slow password hash defends weak secrets, and this one is not weak).
_KEY_BYTES = 32
_MAX_KEY_LENGTH = 200

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    description="`Authorization: Bearer trw_…` with a key from `trouw apikey create`.",
)
header_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="The same key in an `X-API-Key` header, for tools that cannot set Authorization.",
)


class UnknownScopeError(ValueError):
    """A scope that does not exist was asked for; the message lists the valid ones."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and scopes."""

    key_id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        # admin may do everything the other scopes may, so one operator key is enough.
        return scope in self.scopes or "admin" in self.scopes


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256 of the whole key, prefix included."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _checked_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = list(dict.fromkeys(scopes))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise UnknownScopeError(
            f"unknown scope {', '.join(unknown) or '(none given)'}: choose from {', '.join(SCOPES)}"
        )
    return chosen


def create_api_key(session: Session, *, name: str, scopes: Sequence[str]) -> str:
    """Store a new key and return it in plain text: this is the only time it can be seen."""
    if not name.strip() or len(name) > 100:
        raise ValueError("a key needs a name of 1 to 100 characters")
    checked = _checked_scopes(scopes)
    key = KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)
    session.add(ApiKey(name=name.strip(), key_hash=hash_key(key), scopes=checked))
    session.flush()
    return key


def ensure_key(session: Session, name: str, scopes: Sequence[str]) -> str:
    """A working key named `name` for a local tool (the demo): earlier keys of that name are revoked.

    Only hashes are stored, so an existing key cannot be handed out again; a fresh one is made on
    every call and the old ones stop working, which also keeps a leaked demo key short-lived.
    """
    revoke_keys(session, name=name)
    return create_api_key(session, name=name, scopes=scopes)


def revoke_keys(session: Session, *, name: str | None = None, key_id: int | None = None) -> int:
    """Revoke the active keys with this name or id; returns how many."""
    query = select(ApiKey).where(col(ApiKey.revoked_at).is_(None))
    if name is not None:
        query = query.where(ApiKey.name == name.strip())
    if key_id is not None:
        query = query.where(ApiKey.id == key_id)
    now = datetime.now(UTC)
    rows = session.exec(query).all()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    return len(rows)


def find_principal(session: Session, presented: str) -> Principal | None:
    """The active key matching `presented`, or None."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > _MAX_KEY_LENGTH:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(presented))).first()
    if row is None or row.revoked_at is not None or row.id is None:
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes or ()))


def _lookup(engine: Engine, presented: str) -> Principal | None:
    # Read-only: on SQLite every request's key check would otherwise take the write lock.
    with read_scope(engine) as session:
        return find_principal(session, presented)


def _unauthorized() -> HTTPException:
    # One answer for a missing, unknown or revoked key: nothing to learn by probing.
    return HTTPException(
        status_code=401,
        detail="a valid API key is required (Authorization: Bearer or X-API-Key)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def presented_key(request: Request) -> str | None:
    """The key a request carries, read as the security schemes read it (Bearer, X-API-Key)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    presented = credentials.strip() if scheme.lower() == "bearer" else ""
    return presented or request.headers.get("x-api-key", "").strip() or None


async def authenticate(request: Request, engine: Engine) -> Principal:
    """The request's principal, or 401; kept on the request so the route's check reuses it."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    presented = presented_key(request)
    principal = await asyncio.to_thread(_lookup, engine, presented) if presented else None
    if principal is None:
        raise _unauthorized()
    request.state.principal = principal
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: 401 without a valid key, 403 when the key lacks `scope`."""

    async def dependency(
        request: Request,
        state: ApiState = Depends(api_state),
        _bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
        _header: str | None = Security(header_scheme),
    ) -> Principal:
        # The security schemes are parameters for the OpenAPI document; the key is read once.
        principal = await authenticate(request, state.engine)
        if not principal.allows(scope):
            raise _forbidden(scope)
        return principal

    dependency.trouw_scope = scope  # type: ignore[attr-defined]
    return dependency


def _scope_of(dependant: Dependant) -> str | None:
    """The scope a route's `require` dependency asks for, found in its dependency tree."""
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "trouw_scope", None) or _scope_of(sub)
        if scope:
            return str(scope)
    return None


def _forbidden(scope: str) -> HTTPException:
    return HTTPException(status_code=403, detail=f"this API key lacks the {scope} scope")


class KeyFirstRoute(APIRoute):
    """A route that checks its API key before it reads the body.

    FastAPI parses the body before it runs dependencies, so a keyless request with malformed
    JSON would learn 422 (and cost a parse) instead of 401; a key without the route's scope gets
    403 before the body too. Routes without a key (webhooks and
    callbacks, whose signature covers the raw body) are untouched.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope = _scope_of(self.dependant)
        if scope is None:
            return handler

        async def keyed(request: Request) -> Response:
            principal = await authenticate(request, api_state(request).engine)
            if not principal.allows(scope):
                raise _forbidden(scope)
            return await handler(request)

        return keyed
