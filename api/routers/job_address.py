"""Where a technician's job is and how he reaches the household: the address (graded by what the
job is to him), navigation links, and a call through the utility's relay that shows no number."""

import uuid

from fastapi import APIRouter, status
from sqlalchemy import func
from sqlmodel import select

from api.deps import CurrentTechnician, RedisDep, SessionDep
from dispatch import addresses, contact
from dispatch.schemas import ContactRequested, JobAddressPublic, NavigationLinks, StructuredAddress
from matching.models import Offer

router = APIRouter(tags=["field"])


@router.get("/v1/jobs/{order_id}/address", responses={404: {"description": "Neither offered to you nor your job"}})
async def job_address(order_id: uuid.UUID, technician: CurrentTechnician, session: SessionDep) -> JobAddressPublic:
    """On a live offer to you: the district and street only. From your acceptance until the job
    ends: the whole address, the customer's name and links to AMap, Baidu, Apple and Google Maps."""
    offered = (await session.exec(select(Offer.id).where(
        Offer.order_id == order_id, Offer.technician_id == technician.id, Offer.status == "offered",
        Offer.expires_at > func.now()))).first() is not None
    found = await addresses.job_address(session, order_id, technician.id, offered=offered)
    return JobAddressPublic(
        full=found.full, district=found.district, street=found.street, line=found.line,
        structured=StructuredAddress(**found.parts) if found.parts else None, customer_name=found.customer_name,
        location={"type": "Point", "coordinates": list(found.location)} if found.location else None,
        navigation=NavigationLinks(**found.navigation) if found.navigation else None)


@router.post("/v1/jobs/{order_id}/contact", status_code=status.HTTP_202_ACCEPTED, responses={
    404: {"description": "Not your job under way"}, 429: {"description": "Too many calls for this job"}})
async def contact_customer(order_id: uuid.UUID, technician: CurrentTechnician, session: SessionDep,
                           redis: RedisDep) -> ContactRequested:
    """Asks the utility's relay to ring your phone and the household's and bridge them; neither side
    is told the other's number."""
    return ContactRequested(relay=await contact.call_customer(session, redis, order_id, technician))
