"""The technician's portrait, shown to the customers whose orders he takes: uploaded by him,
checked as a certificate photo is, its bytes in the object store by sha256 (kit/objects.py).
`photo_ref` names it as `portrait:<media type>:<sha256>`; only this upload writes that form, so a
technician cannot point his portrait at another object of the store by editing his profile."""

import asyncio

from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.certificate_photos import PhotoFile, check_image, media_type_of
from dispatch.models import Technician
from kit import objects
from kit.errors import InvalidInput, NotFound

PREFIX = "portrait:"


def is_portrait(photo_ref: str | None) -> bool:
    return bool(photo_ref and photo_ref.startswith(PREFIX))


def refuse_forged(photo_ref: str | None) -> None:
    """A profile edit may not write a portrait reference: only an upload, which checked the image, does."""
    if is_portrait(photo_ref):
        raise InvalidInput("the portrait is set by uploading it")


async def upload(session: AsyncSession, technician: Technician, content: bytes, content_type: str | None) -> str:
    media_type = media_type_of(content_type)
    await asyncio.to_thread(check_image, content, media_type)
    digest = await objects.get_store().put_async(content)
    technician.photo_ref = f"{PREFIX}{media_type}:{digest}"
    session.add(technician)
    await session.flush()
    return technician.photo_ref


async def portrait_of(technician: Technician) -> PhotoFile:
    if not is_portrait(technician.photo_ref):
        raise NotFound("no portrait of this technician")
    media_type, digest = technician.photo_ref.removeprefix(PREFIX).rsplit(":", 1)
    return PhotoFile(media_type, await objects.get_store().get_async(digest))
