"""Small factories for the marketplace core; each returns rows plus a bearer header where useful."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlmodel.ext.asyncio.session import AsyncSession

from kit.geo import point
from dispatch.models import Account, Address, Certification, Customer, ServiceStation, Technician
from dispatch.security import hash_password, issue_token

PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # hashed once: argon2 is slow on purpose


def bearer(account: Account) -> dict[str, str]:
    token, _ = issue_token(account.id, account.role)
    return {"Authorization": f"Bearer {token}"}


async def make_account(session: AsyncSession, role: str, name: str = "someone") -> Account:
    account = Account(role=role, email=f"{role}-{uuid.uuid4().hex[:10]}@test.local", password_hash=_HASH, display_name=name)
    session.add(account)
    await session.flush()
    return account


@dataclass
class CustomerCtx:
    account: Account
    customer: Customer
    address: Address
    headers: dict[str, str]


async def make_customer(session: AsyncSession, lon: float = 120.155, lat: float = 30.274) -> CustomerCtx:
    account = await make_account(session, "customer")
    customer = Customer(account_id=account.id, name="李雷", phone="+86 13900000000")
    session.add(customer)
    await session.flush()
    address = Address(customer_id=customer.id, label="家", line="幸福里 1 号", location=point(lon, lat))
    session.add(address)
    await session.flush()
    return CustomerCtx(account, customer, address, bearer(account))


@dataclass
class TechnicianCtx:
    account: Account
    technician: Technician
    headers: dict[str, str]


async def make_technician(
    session: AsyncSession, *, kinds: tuple[str, ...] = ("repair", "inspection"), status: str = "verified",
    valid_until: datetime | None = None, station: ServiceStation | None = None, max_jobs: int = 1,
) -> TechnicianCtx:
    now = datetime.now(timezone.utc)
    account = await make_account(session, "technician", "韩梅梅")
    technician = Technician(account_id=account.id, name="韩梅梅", phone="+86 13800000000", onboarding="active",
                            station_id=station.id if station else None, max_jobs=max_jobs)
    session.add(technician)
    await session.flush()
    for kind in kinds:
        session.add(Certification(
            technician_id=technician.id, kind=kind, number=f"T-{uuid.uuid4().hex[:12]}", issuer="test issuer",
            valid_from=now - timedelta(days=30), valid_until=valid_until or now + timedelta(days=365), status=status))
    await session.flush()
    return TechnicianCtx(account, technician, bearer(account))


async def online_technician(session: AsyncSession, index, lon: float, lat: float, **kw) -> TechnicianCtx:  # noqa: ANN001, ANN003
    """A technician (make_technician's keywords) on duty at (lon, lat) in the live index."""
    from matching import service as engine

    ctx = await make_technician(session, **kw)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=lon, lat=lat, at=datetime.now(timezone.utc))
    return ctx


async def make_staff(session: AsyncSession, role: str) -> tuple[Account, dict[str, str]]:
    account = await make_account(session, role)
    return account, bearer(account)
