"""The photo of a certificate, uploaded by its technician while the certification waits for
verification: one per certification (a new upload replaces it), its bytes in the object store by
sha256 (kit/objects.py), checked to be the JPEG, PNG or WebP image it claims to be. The only
module that imports Pillow."""

import asyncio
import io
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from PIL import Image, UnidentifiedImageError
from sqlalchemy import CheckConstraint
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.errors import (
    CertificationNotPending,
    PhotoBadDimensions,
    PhotoNotAnImage,
    PhotoTooLarge,
    PhotoTypeMismatch,
    PhotoUnsupportedType,
)
from dispatch.models import Certification
from dispatch.technicians import certification_queue_changed, get_technician
from kit import objects
from kit.errors import NotFound
from kit.models import timestamp_column, utcnow

# Media type -> Pillow's name of the format.
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Under the app's 1 MB body limit with room to spare; a phone photo of a page compresses below it.
MAX_BYTES = 800_000
# Smaller than this cannot be read; larger is not a photo, and would cost seconds and gigabytes to decode.
MIN_SIDE_PX = 100
MAX_SIDE_PX = 10_000
MAX_PIXELS = 40_000_000


class CertificatePhoto(SQLModel, table=True):
    __tablename__ = "dispatch_certificate_photo"
    __table_args__ = (
        CheckConstraint(f"media_type IN {tuple(FORMATS)}", name="media_type"),
        CheckConstraint(f"size_bytes > 0 AND size_bytes <= {MAX_BYTES}", name="size_bytes"),
    )

    certification_id: uuid.UUID = Field(foreign_key="dispatch_certification.id", primary_key=True)
    media_type: str = Field(max_length=32)
    size_bytes: int
    sha256: str = Field(max_length=64)  # the object's name in the store
    uploaded_at: datetime = timestamp_column(default_factory=utcnow)


@dataclass(frozen=True)
class PhotoFacts:
    media_type: str
    size_bytes: int
    sha256: str
    uploaded_at: datetime


@dataclass(frozen=True)
class PhotoFile:
    """A photo as served: its type and its bytes, read back from the store and checked against their hash."""

    media_type: str
    content: bytes


def media_type_of(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, if it is one of the accepted ones."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in FORMATS:
        raise PhotoUnsupportedType(f"a photo is one of {', '.join(FORMATS)}, not {media_type or 'untyped'}")
    return media_type


def check_image(content: bytes, media_type: str) -> None:
    """Refuses what does not decode in full, at sensible dimensions, as the format its media type
    says. CPU-bound: run it off the event loop."""
    if len(content) > MAX_BYTES:
        raise PhotoTooLarge(MAX_BYTES)
    try:
        with Image.open(io.BytesIO(content), formats=tuple(FORMATS.values())) as image:
            if image.format != FORMATS[media_type]:
                raise PhotoTypeMismatch(media_type, f"image/{str(image.format).lower()}")
            width, height = image.size
            if (min(width, height) < MIN_SIDE_PX or max(width, height) > MAX_SIDE_PX
                    or width * height > MAX_PIXELS):
                raise PhotoBadDimensions(width, height)
            image.load()  # a truncated or corrupt body fails here, not when someone looks at it
    except Image.DecompressionBombError as exc:
        raise PhotoBadDimensions(None, None) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoNotAnImage(f"not a readable {FORMATS[media_type]} image") from exc


async def _own_pending_certification(session: AsyncSession, certification_id: uuid.UUID,
                                     technician_id: uuid.UUID) -> Certification:
    # Locked like a decision locks it, so a photo cannot land on a certification decided meanwhile.
    cert = await session.get(Certification, certification_id, with_for_update=True)
    if cert is None or cert.technician_id != technician_id:
        raise NotFound("no such certification of yours")
    if cert.status != "pending":
        raise CertificationNotPending(cert.status)
    return cert


async def upload(session: AsyncSession, *, technician_id: uuid.UUID, certification_id: uuid.UUID,
                 content: bytes, content_type: str | None) -> PhotoFacts:
    """Stores the photo of the technician's own pending certification, replacing an earlier one."""
    media_type = media_type_of(content_type)
    await asyncio.to_thread(check_image, content, media_type)
    await _own_pending_certification(session, certification_id, technician_id)
    # Stored before the row, as a job photo is (dispatch/field/photos.py).
    facts = PhotoFacts(media_type, len(content), await objects.get_store().put_async(content), utcnow())
    values = asdict(facts)
    await session.exec(insert(CertificatePhoto).values(certification_id=certification_id, **values)  # type: ignore[call-overload]
                       .on_conflict_do_update(index_elements=["certification_id"], set_=values))
    certification_queue_changed(session, await get_technician(session, technician_id))
    return facts


async def photo_of(session: AsyncSession, certification_id: uuid.UUID,
                   technician_id: uuid.UUID | None) -> PhotoFile:
    """The photo, for its technician (`technician_id`) or for staff (None): NotFound for another
    technician's certification, as when there is no photo."""
    cert = await session.get(Certification, certification_id)
    if cert is None or (technician_id is not None and cert.technician_id != technician_id):
        raise NotFound("no such certification")
    # Fresh from the database: an upload replaces the row with one statement, behind the session's back.
    photo = await session.get(CertificatePhoto, certification_id, populate_existing=True)
    if photo is None:
        raise NotFound("no photo of this certificate")
    return PhotoFile(photo.media_type, await objects.get_store().get_async(photo.sha256))


async def uploaded_at_of(session: AsyncSession, certification_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each of these certifications' photo was uploaded, for those that have one (the bytes stay unread)."""
    if not certification_ids:
        return {}
    rows = await session.exec(select(CertificatePhoto.certification_id, CertificatePhoto.uploaded_at)
                              .where(col(CertificatePhoto.certification_id).in_(certification_ids)))
    return dict(rows.all())
