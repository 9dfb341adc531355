"""Photos of a job, taken by its technician while on site: evidence for the work report and each
hazard, which name them by sha256. Checked like a certificate's photo (dispatch/certificate_photos.py);
the bytes go to the object store (kit/objects.py), the row says whose job they belong to."""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.certificate_photos import PhotoFile, check_image, media_type_of
from dispatch.errors import UnknownPhotoRefs
from dispatch.field.models import Hazard, JobPhoto, WorkReport
from dispatch.models import Order
from dispatch.service import OrderStateConflict
from kit import objects
from kit.errors import NotFound

# On site: from the check-in until the report completes the job.
UPLOAD_STATES = ("arrived", "in_service")


@dataclass(frozen=True)
class JobPhotoFacts:
    ref: str
    media_type: str
    size_bytes: int
    uploaded_at: datetime


async def upload(session: AsyncSession, *, order_id: uuid.UUID, technician_id: uuid.UUID, content: bytes,
                 content_type: str | None, now: datetime) -> JobPhotoFacts:
    """Stores a photo of the job the technician holds; the same image again is the same photo."""
    media_type = media_type_of(content_type)
    await asyncio.to_thread(check_image, content, media_type)
    # Shared lock: the job cannot complete or change hands while its photo is being stored.
    order = await session.get(Order, order_id, with_for_update={"read": True}, populate_existing=True)
    if order is None or order.technician_id != technician_id:
        raise NotFound("no such order")
    if order.status not in UPLOAD_STATES:
        raise OrderStateConflict(f"order is {order.status}, not arrived or in_service", order.status)
    # Stored before the row: a rolled-back upload leaves an unnamed object, never a row without bytes.
    sha256 = await objects.get_store().put_async(content)
    await session.exec(insert(JobPhoto).values(  # type: ignore[call-overload]
        order_id=order_id, sha256=sha256, media_type=media_type, size_bytes=len(content),
        uploaded_by=technician_id, uploaded_at=now).on_conflict_do_nothing(index_elements=["order_id", "sha256"]))
    stored = (await session.exec(select(JobPhoto.media_type, JobPhoto.size_bytes, JobPhoto.uploaded_at).where(
        JobPhoto.order_id == order_id, JobPhoto.sha256 == sha256))).one()
    return JobPhotoFacts(sha256, *stored)


async def check_refs(session: AsyncSession, order_id: uuid.UUID, refs: list[str]) -> None:
    """Every ref names a photo uploaded for this order."""
    if not refs:
        return
    known = set((await session.exec(select(JobPhoto.sha256).where(
        JobPhoto.order_id == order_id, col(JobPhoto.sha256).in_(set(refs))))).all())
    unknown = sorted(set(refs) - known)
    if unknown:
        raise UnknownPhotoRefs(unknown)


async def photo_for(session: AsyncSession, order_id: uuid.UUID, ref: str, *, role: str,
                    customer_id: uuid.UUID | None = None, technician_id: uuid.UUID | None = None) -> PhotoFile:
    """The photo for the order's customer, its technician now or the one who took it, and staff;
    NotFound for anyone else, as when there is no such photo."""
    order = await session.get(Order, order_id)
    photo = await session.get(JobPhoto, (order_id, ref)) if order is not None else None
    if order is None or photo is None:
        raise NotFound("no such photo")
    allowed = (role in ("admin", "auditor")
               or (role == "customer" and customer_id is not None and order.customer_id == customer_id)
               or (role == "technician" and technician_id is not None
                   and technician_id in (order.technician_id, photo.uploaded_by)))
    if not allowed:
        raise NotFound("no such photo")
    return PhotoFile(photo.media_type, await objects.get_store().get_async(photo.sha256))


@dataclass
class EvidencePhoto:
    ref: str
    media_type: str
    size_bytes: int
    uploaded_at: datetime
    shows: list[dict[str, Any]] = field(default_factory=list)  # {"what": "work" | "hazard" | "hazard_fix", ...}


async def evidence_of(session: AsyncSession, order_id: uuid.UUID) -> list[EvidencePhoto]:
    """The photos the order's report and its hazards name, each with what it shows, in the order
    they were named; a photo uploaded but never named is no evidence of anything."""
    named: dict[str, list[dict[str, Any]]] = {}
    report = (await session.exec(select(WorkReport).where(WorkReport.order_id == order_id))).first()
    for ref in report.photo_refs if report else []:
        named.setdefault(ref, []).append({"what": "work"})
    for hazard in (await session.exec(select(Hazard).where(Hazard.order_id == order_id).order_by(Hazard.found_at))).all():
        about = {"hazard_id": str(hazard.id), "category": hazard.category, "severity": hazard.severity}
        for ref in hazard.photo_refs:
            named.setdefault(ref, []).append({"what": "hazard", **about})
        for ref in hazard.fix_photo_refs:
            named.setdefault(ref, []).append({"what": "hazard_fix", **about})
    if not named:
        return []
    rows = {p.sha256: p for p in (await session.exec(select(JobPhoto).where(
        JobPhoto.order_id == order_id, col(JobPhoto.sha256).in_(list(named))))).all()}
    return [EvidencePhoto(ref, rows[ref].media_type, rows[ref].size_bytes, rows[ref].uploaded_at, shows)
            for ref, shows in named.items() if ref in rows]
