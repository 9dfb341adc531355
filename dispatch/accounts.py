"""Registration with a password policy, login with back-off, tokens (access, refresh, revocation)
and who-is-who lookups."""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from limits import RateLimitItemPerHour, RateLimitItemPerSecond
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession
from zxcvbn import zxcvbn

from kit import ratelimit
from kit.config import get_settings
from dispatch.errors import AccountDisabled, AuthenticationFailed, RefreshTokenReused, WeakPassword
from kit.errors import Conflict, NotFound
from dispatch.models import Account, Customer, RefreshToken, ServiceStation, Technician
from dispatch.security import (
    AccessClaims, decode_token, hash_password, issue_token, new_refresh_token, refresh_token_hash, verify_password,
)

MIN_PASSWORD_LENGTH = 10
# zxcvbn scores 0 and 1 fall to ~10^6 guesses: the common-password lists and their variants.
MIN_PASSWORD_SCORE = 2
ZXCVBN_MAX_LENGTH = 72  # the library refuses longer input; the rest can only add strength


def check_password_policy(password: str, *, email: str, name: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword("too_short", MIN_PASSWORD_LENGTH, f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    email = email.lower()
    local_part = email.split("@")[0]
    if password.lower() in (email, local_part):
        raise WeakPassword("is_email", MIN_PASSWORD_LENGTH, "the password must not be the email")
    if zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[email, local_part, name])["score"] < MIN_PASSWORD_SCORE:
        raise WeakPassword("too_common", MIN_PASSWORD_LENGTH, "the password is too common or too easy to guess")


async def _new_account(session: AsyncSession, *, role: str, email: str, password: str, name: str) -> Account:
    email = email.lower()
    check_password_policy(password, email=email, name=name)
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
    station = await session.get(ServiceStation, station_id) if station_id else None
    if station_id and station is None:
        raise NotFound("no such station")
    account = await _new_account(session, role="technician", email=email, password=password, name=name)
    technician = Technician(account_id=account.id, name=name, phone=phone, station_id=station_id,
                            **({"city_id": station.city_id} if station else {}))
    session.add(technician)
    await session.flush()
    return technician


async def create_staff(session: AsyncSession, *, role: str, email: str, password: str, name: str) -> Account:
    """Auditors and admins are created by operators (CLI/seed), never self-registered."""
    if role not in ("auditor", "admin"):
        raise ValueError(role)
    return await _new_account(session, role=role, email=email, password=password, name=name)


# -- throttling (Redis, moving windows) ---------------------------------------------------------

async def check_registration_rate(redis: Redis, client: str) -> None:
    """Counts every registration attempt from the address, so taken emails cannot be listed by trying."""
    await ratelimit.take(redis, [RateLimitItemPerHour(get_settings().register_max_per_hour)], "register", client,
                         detail="too many registrations; try again later")


# -- login and tokens ---------------------------------------------------------------------------

@dataclass(frozen=True)
class IssuedTokens:
    role: str
    access_token: str
    expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


async def _issue(session: AsyncSession, account: Account, family_id: uuid.UUID | None = None) -> IssuedTokens:
    access, expires_at = issue_token(account.id, account.role, version=account.token_version)
    refresh, digest = new_refresh_token()
    refresh_expires_at = datetime.now(timezone.utc) + timedelta(seconds=get_settings().refresh_ttl_s)
    session.add(RefreshToken(account_id=account.id, family_id=family_id or uuid.uuid4(), token_hash=digest,
                             expires_at=refresh_expires_at))
    await session.flush()
    return IssuedTokens(account.role, access, expires_at, refresh, refresh_expires_at)


async def login(session: AsyncSession, redis: Redis, *, email: str, password: str, client: str) -> IssuedTokens:
    """Failures back off per (account, address), in a moving window: someone failing elsewhere never
    locks the owner out, and nobody else's failures lock out an address shared by many (NAT)."""
    settings = get_settings()
    email = email.lower()
    item = RateLimitItemPerSecond(settings.login_max_failures, settings.login_window_s)
    keys = ("login", hashlib.sha256(email.encode()).hexdigest()[:32], client)  # no email addresses in Redis keys
    await ratelimit.refuse_when_spent(redis, item, *keys, detail="too many attempts; try again later")
    account = (await session.exec(select(Account).where(Account.email == email))).first()
    if not verify_password(account.password_hash if account else None, password) or account is None:
        await ratelimit.limiter(redis).hit(item, *keys)
        raise AuthenticationFailed("wrong email or password")
    if account.disabled_at is not None:  # told only to whoever knows the password
        raise AccountDisabled()
    await ratelimit.limiter(redis).clear(item, *keys)
    return await _issue(session, account)


async def refresh(session: AsyncSession, token: str) -> IssuedTokens | AuthenticationFailed:
    """Spends the refresh token and issues the next of its family.

    A refusal is returned, not raised: revoking the family of a reused token must commit.
    """
    now = datetime.now(timezone.utc)
    digest = refresh_token_hash(token)
    spent = (await session.exec(
        update(RefreshToken)
        .where(RefreshToken.token_hash == digest, col(RefreshToken.spent_at).is_(None),
               col(RefreshToken.revoked_at).is_(None), RefreshToken.expires_at > now)
        .values(spent_at=now).returning(RefreshToken.account_id, RefreshToken.family_id))).first()
    if spent is None:
        known = (await session.exec(select(RefreshToken).where(RefreshToken.token_hash == digest))).first()
        if known is not None and known.spent_at is not None:
            await session.exec(update(RefreshToken).where(
                RefreshToken.family_id == known.family_id, col(RefreshToken.revoked_at).is_(None)).values(revoked_at=now))
            return RefreshTokenReused()
        return AuthenticationFailed("invalid or expired refresh token")
    account_id, family_id = spent
    account = await session.get(Account, account_id)
    if account is None or account.disabled_at is not None:
        return AuthenticationFailed("invalid or expired refresh token")
    return await _issue(session, account, family_id)


async def revoke_all(session: AsyncSession, account: Account) -> None:
    """Every access token (by the version bump) and every refresh token of the account."""
    account.token_version += 1
    session.add(account)
    await session.exec(update(RefreshToken).where(
        RefreshToken.account_id == account.id, col(RefreshToken.revoked_at).is_(None)
    ).values(revoked_at=datetime.now(timezone.utc)))
    await session.flush()


async def logout(session: AsyncSession, account_id: uuid.UUID) -> None:
    account = await session.get(Account, account_id)
    if account is not None:
        await revoke_all(session, account)


async def set_disabled(session: AsyncSession, account_id: uuid.UUID, disabled: bool, *, by: uuid.UUID) -> Account:
    if account_id == by:
        raise Conflict("an operator cannot disable or re-enable his own account")
    account = await session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFound("no such account")
    if disabled and account.disabled_at is None:
        account.disabled_at = datetime.now(timezone.utc)
        await revoke_all(session, account)
    elif not disabled:
        account.disabled_at = None
        session.add(account)
        await session.flush()
    return account


async def authenticate(session: AsyncSession, token: str) -> AccessClaims:
    """A valid signature is not enough: the account must exist, still have the token's role,
    not be disabled, and not have revoked the token's version."""
    claims = decode_token(token)
    account = await session.get(Account, claims.principal.account_id)
    if (account is None or account.disabled_at is not None or account.role != claims.principal.role
            or account.token_version != claims.token_version):
        raise AuthenticationFailed("the token has been revoked")
    return claims


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
