"""Technician profiles, certifications and onboarding (training, exam, verification)."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, func, literal_column, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.alerts import ops_channel
from kit.config import get_settings
from kit.fanout import push_after_commit
from kit.errors import Conflict, NotFound
from dispatch.errors import IllegalTransition
from dispatch.events import CERTIFICATION_DECIDED
from kit.events import publish_event
from dispatch.models import Certification, Order, Technician, TrainingRecord
from dispatch.states import ACTIVE_JOB_STATES


def certification_usable(cert: Certification, now: datetime | None = None) -> bool:
    """Only a verified certification inside its validity period qualifies a technician."""
    now = now or datetime.now(timezone.utc)
    return cert.status == "verified" and cert.valid_from <= now < cert.valid_until


def renewal_due(cert: Certification, now: datetime | None = None) -> bool:
    now = now or datetime.now(timezone.utc)
    notice = timedelta(days=get_settings().certification_renewal_notice_days)
    return cert.status == "verified" and now < cert.valid_until <= now + notice


def usable_kinds(certs: list[Certification], now: datetime | None = None) -> set[str]:
    return {c.kind for c in certs if certification_usable(c, now)}


async def certifications_of(session: AsyncSession, technician_id: uuid.UUID) -> list[Certification]:
    return list(
        (await session.exec(
            select(Certification).where(Certification.technician_id == technician_id).order_by(Certification.created_at)
        )).all()
    )


@dataclass(frozen=True, slots=True)
class CertificationFacts:
    kind: str
    verified: bool
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class DispatchFacts:
    """What matching needs of a technician to offer him work, as of this transaction."""

    id: uuid.UUID
    account_id: uuid.UUID
    status: str
    max_jobs: int
    idle_since: datetime | None
    active_jobs: int
    certifications: tuple[CertificationFacts, ...]


async def dispatch_facts(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, DispatchFacts]:
    """The technicians' rows, certifications and jobs in hand in one round trip: an emergency's
    offer waits on this query."""
    if not ids:
        return {}
    certs = (select(func.coalesce(func.json_agg(func.json_build_array(
        Certification.kind, Certification.status == "verified", Certification.valid_from, Certification.valid_until,
    )), literal_column("'[]'::json"))).where(Certification.technician_id == Technician.id).scalar_subquery())
    jobs = (select(func.count()).select_from(Order).where(
        Order.technician_id == Technician.id, col(Order.status).in_(ACTIVE_JOB_STATES)).scalar_subquery())
    rows = (await session.exec(select(
        Technician.id, Technician.account_id, Technician.status, Technician.max_jobs, Technician.idle_since,
        jobs, certs).where(col(Technician.id).in_(list(ids))))).all()
    return {row[0]: DispatchFacts(
        id=row[0], account_id=row[1], status=row[2], max_jobs=row[3], idle_since=row[4], active_jobs=row[5],
        certifications=tuple(CertificationFacts(kind, verified, datetime.fromisoformat(start), datetime.fromisoformat(end))
                             for kind, verified, start, end in row[6]),
    ) for row in rows}


async def get_technician(session: AsyncSession, technician_id: uuid.UUID) -> Technician:
    technician = await session.get(Technician, technician_id)
    if technician is None:
        raise NotFound("no such technician")
    return technician


async def add_certification(
    session: AsyncSession, *, technician_id: uuid.UUID, kind: str, number: str, issuer: str,
    valid_from: datetime, valid_until: datetime,
) -> Certification:
    cert = Certification(
        technician_id=technician_id, kind=kind, number=number, issuer=issuer,
        valid_from=valid_from, valid_until=valid_until,
    )
    session.add(cert)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("this issuer's certificate number is already registered") from exc
    certification_queue_changed(session, await get_technician(session, technician_id))
    return cert


def certification_queue_changed(session: AsyncSession, technician: Technician) -> None:
    """Once committed, the operations consoles of the technician's city reload their queue."""
    push_after_commit(session, ops_channel(technician.city_id), "certification_queue",
                      technician_id=str(technician.id))


_DECISIONS = {
    "verify": ({"pending"}, "verified"),
    "reject": ({"pending"}, "rejected"),
    "revoke": ({"verified"}, "revoked"),
}


async def decide_certification(
    session: AsyncSession, *, certification_id: uuid.UUID, decision: str, admin_id: uuid.UUID, reason: str | None
) -> Certification:
    cert = await session.get(Certification, certification_id, with_for_update=True)
    if cert is None:
        raise NotFound("no such certification")
    allowed_from, target = _DECISIONS[decision]
    if cert.status not in allowed_from:
        raise IllegalTransition(f"cannot {decision} a certification that is {cert.status}")
    if decision in ("reject", "revoke") and not reason:
        raise IllegalTransition(f"{decision} needs a reason")
    cert.status = target
    cert.decided_by = admin_id
    cert.decided_at = datetime.now(timezone.utc)
    cert.decision_reason = reason
    session.add(cert)
    technician = await get_technician(session, cert.technician_id)
    if target == "verified" and technician.onboarding == "applicant":
        technician.onboarding = "active"
        session.add(technician)
    await session.flush()
    await publish_event(session, CERTIFICATION_DECIDED[target](
        certification_id=cert.id, technician_id=cert.technician_id, kind=cert.kind))
    certification_queue_changed(session, technician)
    return cert


async def record_training(
    session: AsyncSession, *, technician_id: uuid.UUID, record_type: str, kind: str, held_at: datetime,
    score: int | None, passed: bool | None, certificate_number: str | None, valid_years: int,
    issuer: str, recorded_by: uuid.UUID,
) -> TrainingRecord:
    """A passed exam issues a certification, pending until an admin verifies it."""
    await get_technician(session, technician_id)
    record = TrainingRecord(
        technician_id=technician_id, record_type=record_type, kind=kind, held_at=held_at,
        score=score, passed=passed, recorded_by=recorded_by,
    )
    if record_type == "exam" and passed:
        trained = (await session.exec(select(TrainingRecord.id).where(
            TrainingRecord.technician_id == technician_id, TrainingRecord.kind == kind,
            TrainingRecord.record_type == "training"))).first()
        if trained is None:
            raise IllegalTransition("an exam pass needs a recorded training session for that kind first")
        cert = await add_certification(
            session, technician_id=technician_id, kind=kind, number=certificate_number or "",
            issuer=issuer, valid_from=held_at, valid_until=held_at + timedelta(days=365 * valid_years),
        )
        record.certification_id = cert.id
    session.add(record)
    await session.flush()
    return record


@dataclass(frozen=True, slots=True)
class PositionCopy:
    technician_id: uuid.UUID
    lon: float
    lat: float
    at: datetime


async def record_last_positions(session: AsyncSession, copies: Sequence[PositionCopy]) -> None:
    """The durable copies of technicians' positions, written at a lower rate than Redis gets
    them: many in one statement (the socket's fixes of one loop iteration), no row loaded; a
    copy never goes back in time."""
    if not copies:
        return
    table = Technician.__table__
    await session.execute(
        update(table).where(table.c.id == bindparam("technician_id"),
                            or_(table.c.last_seen_at.is_(None), table.c.last_seen_at <= bindparam("seen_at")))
        .values(last_location=func.ST_SetSRID(func.ST_MakePoint(bindparam("lon"), bindparam("lat")), 4326),
                last_seen_at=bindparam("seen_at")),
        [{"technician_id": c.technician_id, "lon": c.lon, "lat": c.lat, "seen_at": c.at} for c in copies])


# Availability: other packages (matching) change a technician's status through these, never by
# writing his row. `load` is the jobs he holds as the caller counts them.

async def go_on_duty(session: AsyncSession, technician: Technician, load: int, now: datetime) -> None:
    """Online, or busy when already at capacity; idle since he last became free."""
    technician.status = "busy" if load >= technician.max_jobs else "online"
    technician.idle_since = technician.idle_since or now
    session.add(technician)
    await session.flush()


async def go_off_duty(session: AsyncSession, technician: Technician) -> None:
    technician.status = "offline"
    session.add(technician)
    await session.flush()


async def take_job(session: AsyncSession, technician: Technician, load: int) -> None:
    """He took a job (counted in `load`): busy at capacity, no longer idle."""
    technician.status = "busy" if load >= technician.max_jobs else "online"
    technician.idle_since = None
    session.add(technician)
    await session.flush()


async def release_job(session: AsyncSession, technician: Technician, load: int, now: datetime) -> None:
    """A job left his hands (`load` remain): a busy technician with room is online again, idle from now."""
    if technician.status == "busy" and load < technician.max_jobs:
        technician.status, technician.idle_since = "online", now
        session.add(technician)
        await session.flush()
