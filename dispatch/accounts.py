"""Registration, login with throttling, and who-is-who lookups."""

import uuid

from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.config import get_settings
from dispatch.errors import AuthenticationFailed, Conflict, NotFound, TooManyAttempts
from dispatch.models import Account, Customer, ServiceStation, Technician
from dispatch.security import hash_password, issue_token, verify_password


async def _new_account(session: AsyncSession, *, role: str, email: str, password: str, name: str) -> Account:
    email = email.lower()
    if (await session.exec(select(Account.id).where(Account.email == email))).first():
        raise Conflict("an account with this email exists")
    account = Account(role=role, email=email, password_hash=hash_password(password), display_name=name)
    session.add(account)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent registration won the unique email
        raise Conflict("an account with this email exists") from exc
    return account


async def register_customer(session: AsyncSession, *, email: str, password: str, name: str, phone: str) -> Customer:
    account = await _new_account(session, role="customer", email=email, password=password, name=name)
    customer = Customer(account_id=account.id, name=name, phone=phone)
    session.add(customer)
    await session.flush()
    return customer


async def register_technician(
    session: AsyncSession, *, email: str, password: str, name: str, phone: str, station_id: uuid.UUID | None
) -> Technician:
    if station_id and not await session.get(ServiceStation, station_id):
        raise NotFound("no such station")
    account = await _new_account(session, role="technician", email=email, password=password, name=name)
    technician = Technician(account_id=account.id, name=name, phone=phone, station_id=station_id)
    session.add(technician)
    await session.flush()
    return technician


async def create_staff(session: AsyncSession, *, role: str, email: str, password: str, name: str) -> Account:
    """Auditors and admins are created by operators (CLI/seed), never self-registered."""
    if role not in ("auditor", "admin"):
        raise ValueError(role)
    return await _new_account(session, role=role, email=email, password=password, name=name)


async def login(session: AsyncSession, redis: Redis, *, email: str, password: str, client: str) -> tuple[Account, str, object]:
    settings = get_settings()
    keys = (f"dispatch:login_fail:acct:{email.lower()}", f"dispatch:login_fail:addr:{client}")
    for key in keys:
        failures = await redis.get(key)
        if failures is not None and int(failures) >= settings.login_max_failures:
            raise TooManyAttempts("too many failed logins; try again later", retry_after_s=max(1, await redis.ttl(key)))
    account = (await session.exec(select(Account).where(Account.email == email.lower()))).first()
    if not verify_password(account.password_hash if account else None, password) or account is None:
        async with redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, settings.login_window_s, nx=True)
            await pipe.execute()
        raise AuthenticationFailed("wrong email or password")
    await redis.delete(keys[0])
    token, expires = issue_token(account.id, account.role)
    return account, token, expires


async def customer_for_account(session: AsyncSession, account_id: uuid.UUID) -> Customer:
    customer = (await session.exec(select(Customer).where(Customer.account_id == account_id))).first()
    if customer is None:
        raise NotFound("no customer profile")
    return customer


async def technician_for_account(session: AsyncSession, account_id: uuid.UUID) -> Technician:
    technician = (await session.exec(select(Technician).where(Technician.account_id == account_id))).first()
    if technician is None:
        raise NotFound("no technician profile")
    return technician
