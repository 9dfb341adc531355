"""Who is at the door: signed QR payloads, one-time codes, waivers, and the public certificate check.

A QR token is `base64url(canonical JSON) . base64url(HMAC-SHA256)`; the payload names its key
id, so tokens signed before a key rotation stay verifiable while the old key is configured.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.config import get_settings
from kit.errors import Conflict, DomainError, InvalidInput, NotFound, TooManyAttempts
from kit.events import publish_event
from dispatch.field import events
from dispatch.field.models import Verification, Visit
from dispatch.models import Certification, Order, ServiceStation, Technician
from dispatch.service import Actor
from dispatch.states import ACTIVE_JOB_STATES
from dispatch.technicians import certification_usable

# From acceptance until completion the customer may see who is coming.


class InvalidQrToken(InvalidInput):
    """The QR payload is forged, expired or not for this order."""

    slug = "invalid-qr-token"


class WrongCode(InvalidInput):
    """The one-time code does not match."""

    slug = "wrong-code"
    fields = ("tries_left",)

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"the code does not match; {tries_left} tries left")
        self.extra = {"tries_left": tries_left}


class IdentityLocked(TooManyAttempts):
    """Too many wrong codes: verify with the QR payload or ask operations."""

    slug = "identity-locked"


class NoVisitInProgress(Conflict):
    """The order has no technician on the way or on site."""

    slug = "no-visit-in-progress"


@dataclass(frozen=True)
class QrClaims:
    order_id: uuid.UUID
    technician_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True)
class IdentityCard:
    technician_id: uuid.UUID
    name: str
    photo_ref: str | None
    station: str | None
    certification_kind: str | None
    certification_number: str | None
    code: str | None
    code_expires_at: datetime | None
    verification: str | None


@dataclass(frozen=True)
class PublicCheck:
    technician_name: str
    station: str | None
    certification_kind: str
    certificate_valid: bool
    certificate_valid_until: datetime | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _canonical(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign_qr(order_id: uuid.UUID, technician_id: uuid.UUID, now: datetime) -> tuple[str, datetime]:
    settings = get_settings()
    expires_at = now + timedelta(seconds=settings.qr_ttl_s)
    kid = settings.qr_active_key_id
    body = _canonical({"exp": int(expires_at.timestamp()), "kid": kid, "o": str(order_id), "t": str(technician_id)})
    signature = hmac.new(settings.qr_signing_keys[kid].encode(), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(signature)}", expires_at.replace(microsecond=0)


def read_qr(token: str, now: datetime) -> QrClaims:
    try:
        body_part, sig_part = token.split(".")
        body, signature = _unb64(body_part), _unb64(sig_part)
        claims = json.loads(body)
        secret = get_settings().qr_signing_keys.get(str(claims["kid"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidQrToken() from exc
    if secret is None or not hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).digest(), signature):
        raise InvalidQrToken()
    try:
        parsed = QrClaims(uuid.UUID(claims["o"]), uuid.UUID(claims["t"]),
                          datetime.fromtimestamp(int(claims["exp"]), timezone.utc))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidQrToken() from exc
    if parsed.expires_at <= now:
        raise InvalidQrToken("the QR payload has expired")
    return parsed


def _new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


async def ensure_visit(session: AsyncSession, order: Order, now: datetime) -> Visit:
    """The visit of the order's current technician; a new technician (after a pre-emption)
    starts a fresh visit, and an expired code is replaced unless the code is locked."""
    if order.status not in ACTIVE_JOB_STATES or order.technician_id is None:
        raise NoVisitInProgress()
    visit = await session.get(Visit, order.id, with_for_update=True)
    ttl = timedelta(seconds=get_settings().field_code_ttl_s)
    if visit is None:
        visit = Visit(order_id=order.id, technician_id=order.technician_id, code=_new_code(),
                      code_issued_at=now, created_at=now)
    elif visit.technician_id != order.technician_id:
        for name, value in dict(technician_id=order.technician_id, code=_new_code(), code_issued_at=now,
                                code_failures=0, code_locked_at=None, verification=None, verified_at=None,
                                departed_at=None).items():
            setattr(visit, name, value)
    elif visit.code_locked_at is None and visit.verification is None and visit.code_issued_at + ttl <= now:
        visit.code, visit.code_issued_at, visit.code_failures = _new_code(), now, 0
    session.add(visit)
    await session.flush()
    return visit


async def usable_certification(session: AsyncSession, technician_id: uuid.UUID, kind: str,
                               now: datetime) -> Certification | None:
    certs = (await session.exec(select(Certification).where(
        Certification.technician_id == technician_id, Certification.kind == kind))).all()
    usable = [c for c in certs if certification_usable(c, now)]
    return max(usable, key=lambda c: c.valid_until, default=None)


async def _station_name(session: AsyncSession, technician: Technician) -> str | None:
    station = await session.get(ServiceStation, technician.station_id) if technician.station_id else None
    return station.name if station else None


async def identity_card(session: AsyncSession, order: Order, now: datetime) -> IdentityCard:
    visit = await ensure_visit(session, order, now)
    technician = await session.get(Technician, visit.technician_id)
    assert technician is not None
    cert = await usable_certification(session, technician.id, order.required_certification, now)
    code_open = visit.verification is None and visit.code_locked_at is None
    return IdentityCard(
        technician_id=technician.id, name=technician.name, photo_ref=technician.photo_ref,
        station=await _station_name(session, technician),
        certification_kind=cert.kind if cert else None, certification_number=cert.number if cert else None,
        code=visit.code if code_open else None,
        code_expires_at=visit.code_issued_at + timedelta(seconds=get_settings().field_code_ttl_s) if code_open else None,
        verification=visit.verification,
    )


async def _record(session: AsyncSession, visit: Visit, method: str, succeeded: bool, actor: Actor,
                  now: datetime, detail: str | None = None) -> None:
    session.add(Verification(order_id=visit.order_id, technician_id=visit.technician_id, method=method,
                             succeeded=succeeded, actor_role=actor.role, actor_id=actor.id, detail=detail,
                             created_at=now))
    if succeeded:
        visit.verification, visit.verified_at = method, now
        session.add(visit)
    await session.flush()


async def verify_qr(session: AsyncSession, order: Order, token: str, actor: Actor, now: datetime) -> Visit:
    """The customer's app scanned the technician's QR code."""
    claims = read_qr(token, now)
    visit = await ensure_visit(session, order, now)
    if claims.order_id != order.id or claims.technician_id != visit.technician_id:
        raise InvalidQrToken("the QR payload is for another order or technician")
    await _record(session, visit, "qr", True, actor, now)
    return visit


async def submit_code(session: AsyncSession, order: Order, technician_id: uuid.UUID, code: str,
                      now: datetime) -> DomainError | None:
    """The technician typed the code the customer told him.

    Returns the refusal instead of raising it, so the failure count and the lock are kept
    when the caller commits; raising would roll them back and reset the limit.
    """
    visit = await ensure_visit(session, order, now)
    if visit.technician_id != technician_id:
        raise NotFound("no such order")
    actor = Actor("technician", str(technician_id))
    if visit.code_locked_at is not None:
        return IdentityLocked()
    if visit.verification is not None:
        return None
    if hmac.compare_digest(visit.code.encode(), code.encode()):
        await _record(session, visit, "code", True, actor, now)
        return None
    visit.code_failures += 1
    await _record(session, visit, "code", False, actor, now, detail=f"wrong code ({visit.code_failures})")
    if visit.code_failures >= get_settings().field_code_max_failures:
        visit.code_locked_at = now
        session.add(visit)
        await publish_event(session, events.IdentityLocked(order_id=order.id, technician_id=technician_id))
        return IdentityLocked()
    return WrongCode(tries_left=get_settings().field_code_max_failures - visit.code_failures)


async def waive(session: AsyncSession, order: Order, actor: Actor, reason: str | None, now: datetime) -> Visit:
    """The customer chose to let the technician in without verifying him; kept on the order."""
    visit = await ensure_visit(session, order, now)
    await _record(session, visit, "waived", True, actor, now, detail=reason)
    return visit


async def verifications(session: AsyncSession, order_id: uuid.UUID) -> list[Verification]:
    return list((await session.exec(select(Verification).where(Verification.order_id == order_id)
                                    .order_by(Verification.created_at))).all())


async def public_check(session: AsyncSession, token: str, now: datetime) -> PublicCheck:
    """What anyone holding the QR may learn: name, station and whether the certificate is valid."""
    claims = read_qr(token, now)
    order = await session.get(Order, claims.order_id)
    technician = await session.get(Technician, claims.technician_id)
    if order is None or technician is None:
        raise InvalidQrToken()
    cert = await usable_certification(session, technician.id, order.required_certification, now)
    usable_now = cert is not None and technician.status != "suspended"
    return PublicCheck(technician_name=technician.name, station=await _station_name(session, technician),
                       certification_kind=order.required_certification, certificate_valid=usable_now,
                       certificate_valid_until=cert.valid_until if usable_now and cert else None)
