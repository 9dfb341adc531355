"""Typed dependencies: the session (the request boundary commits), Redis, the caller and roles."""

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.accounts import customer_for_account, technician_for_account
from dispatch.db import session_scope
from dispatch.errors import AuthenticationFailed, Conflict, Forbidden, IdempotencyConflict
from dispatch.models import Customer, IdempotencyRecord, Technician
from dispatch.redis import get_redis
from dispatch.security import Principal, decode_token


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_scope() as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RedisDep = Annotated[Redis, Depends(get_redis)]

_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("a bearer token is required")
    return decode_token(credentials.credentials)


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
    return request.client.host if request.client else "unknown"
