"""Typed dependencies: the session (the request boundary commits), Redis, the caller and roles."""

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.accounts import authenticate, customer_for_account, technician_for_account
from kit.config import get_settings
from kit.db import session_scope
from dispatch.errors import AuthenticationFailed
from kit.errors import Conflict, Forbidden, IdempotencyConflict
from dispatch.models import Customer, IdempotencyRecord, Technician
from kit.redis import get_redis
from dispatch.security import Principal
from settlement import audit


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_scope() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RedisDep = Annotated[Redis, Depends(get_redis)]

_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)], session: SessionDep,
    request: Request,
) -> Principal:
    """Checked against the account on every request, so logout and disabling take effect at once.
    Every read by an auditor is access-logged, in the request's own transaction."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required")
    principal = (await authenticate(session, credentials.credentials)).principal
    if principal.role == "auditor" and request.method == "GET":
        await log_read(session, principal, request)
    return principal


async def log_read(session: AsyncSession, principal: Principal, request: Request) -> None:
    """An audit-access row naming the route, its path parameters and its query."""
    route = request.scope.get("route")
    await audit.log_access(session, account_id=principal.account_id, role=principal.role,
                           action=getattr(route, "name", "read")[:40],
                           target=_storable(",".join(str(v) for v in request.path_params.values()))[:100] or None,
                           params={_storable(k)[:50]: _storable(v)[:200] for k, v in list(request.query_params.items())[:20]})


def _storable(text: str) -> str:
    """PostgreSQL text and JSON hold no NUL: a fuzzed query string is logged without it."""
    return text.replace("\x00", "")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str) -> Callable[..., Any]:
    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        return principal

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


async def _current_customer(principal: Annotated[Principal, Depends(require_role("customer"))], session: SessionDep) -> Customer:
    return await customer_for_account(session, principal.account_id)


async def _current_technician(principal: Annotated[Principal, Depends(require_role("technician"))], session: SessionDep) -> Technician:
    return await technician_for_account(session, principal.account_id)


CurrentCustomer = Annotated[Customer, Depends(_current_customer)]
CurrentTechnician = Annotated[Technician, Depends(_current_technician)]
Admin = Annotated[Principal, Depends(require_role("admin"))]
CustomerPrincipal = Annotated[Principal, Depends(require_role("customer"))]
CustomerOrAdmin = Annotated[Principal, Depends(require_role("customer", "admin"))]
Staff = Annotated[Principal, Depends(require_role("admin", "auditor"))]
Anyone = CurrentPrincipal

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


async def replay_idempotent(
    session: AsyncSession, principal: Principal, key: str | None, route: str, body: Any
) -> tuple[str | None, JSONResponse | None]:
    """Returns (request hash, stored response) for a repeated key; 409 if the body differs."""
    if key is None:
        return None, None
    request_hash = hashlib.sha256(json.dumps(jsonable_encoder(body), sort_keys=True).encode()).hexdigest()
    record = await session.get(IdempotencyRecord, (principal.account_id, key))
    if record is None:
        return request_hash, None
    if record.request_hash != request_hash or record.route != route:
        raise IdempotencyConflict()
    return request_hash, JSONResponse(record.response_body, status_code=record.response_status,
                                      headers={"Idempotent-Replayed": "true"})


async def remember_idempotent(
    session: AsyncSession, principal: Principal, key: str | None, route: str, request_hash: str | None,
    status: int, body: Any,
) -> None:
    if key is None or request_hash is None:
        return
    session.add(IdempotencyRecord(
        account_id=principal.account_id, key=key, route=route, request_hash=request_hash,
        response_status=status, response_body=jsonable_encoder(body),
    ))
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent request with the same key got there first
        raise Conflict("a request with this Idempotency-Key is in progress") from exc


def client_address(request: Request) -> str:
    """The peer, or, when the peer is a configured proxy, the nearest address in X-Forwarded-For
    that is not one of ours (the ones further left are whatever the client chose to write)."""
    peer = request.client.host if request.client else "unknown"
    proxies = get_settings().trusted_proxies
    if not _is_trusted(peer, proxies):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")]
    for hop in reversed(hops):
        if hop and not _is_trusted(hop, proxies):
            return hop
    return peer


def _is_trusted(address: str, proxies: list[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)
