import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, StringConstraints

from api.deps import Admin, Anyone, RedisDep, SessionDep, client_address
from api.errors import domain_problem
from dispatch import accounts
from dispatch.schemas import CustomerRegister, Login, TechnicianRegister, Token
from kit.schemas import Input

router = APIRouter(tags=["auth"])


class RefreshBody(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AccountStatus(BaseModel):
    id: uuid.UUID
    disabled: bool


def _token(issued: accounts.IssuedTokens) -> Token:
    expires_in = max(0, int((issued.expires_at - datetime.now(timezone.utc)).total_seconds()))
    return Token(access_token=issued.access_token, expires_at=issued.expires_at, expires_in=expires_in,
                 refresh_token=issued.refresh_token, refresh_expires_at=issued.refresh_expires_at, role=issued.role)


@router.post("/v1/auth/register/customer", status_code=status.HTTP_201_CREATED)
async def register_customer(body: CustomerRegister, request: Request, session: SessionDep, redis: RedisDep) -> dict[str, str]:
    await accounts.check_registration_rate(redis, client_address(request))
    customer = await accounts.register_customer(
        session, email=body.email, password=body.password, name=body.name, phone=body.phone)
    return {"id": str(customer.id), "role": "customer"}


@router.post("/v1/auth/register/technician", status_code=status.HTTP_201_CREATED)
async def register_technician(body: TechnicianRegister, request: Request, session: SessionDep,
                              redis: RedisDep) -> dict[str, str]:
    await accounts.check_registration_rate(redis, client_address(request))
    technician = await accounts.register_technician(
        session, email=body.email, password=body.password, name=body.name, phone=body.phone,
        station_id=body.station_id)
    return {"id": str(technician.id), "role": "technician"}


@router.post("/v1/auth/login")
async def login(body: Login, request: Request, session: SessionDep, redis: RedisDep) -> Token:
    return _token(await accounts.login(
        session, redis, email=body.email, password=body.password, client=client_address(request)))


@router.post("/v1/auth/refresh")
async def refresh(body: RefreshBody, session: SessionDep) -> Any:
    """Spends the refresh token for a new pair; a spent token presented again signs its family out."""
    issued = await accounts.refresh(session, body.refresh_token)
    if not isinstance(issued, accounts.IssuedTokens):
        # Returned, not raised: the request commits, so the family's revocation stays.
        return domain_problem(issued)
    return _token(issued)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: Anyone, session: SessionDep) -> None:
    """Signs the account out everywhere: every access and refresh token it holds stops working."""
    await accounts.logout(session, principal.account_id)


@router.post("/v1/accounts/{account_id}/disable")
async def disable_account(account_id: uuid.UUID, admin: Admin, session: SessionDep) -> AccountStatus:
    account = await accounts.set_disabled(session, account_id, True, by=admin.account_id)
    return AccountStatus(id=account.id, disabled=True)


@router.post("/v1/accounts/{account_id}/enable")
async def enable_account(account_id: uuid.UUID, admin: Admin, session: SessionDep) -> AccountStatus:
    account = await accounts.set_disabled(session, account_id, False, by=admin.account_id)
    return AccountStatus(id=account.id, disabled=False)
