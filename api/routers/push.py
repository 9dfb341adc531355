"""Web Push subscriptions: a technician's devices, so an offer reaches a locked phone
(dispatch/push.py sends them)."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import AfterValidator, BaseModel, Field

from api.deps import SessionDep, require_role
from dispatch import push
from dispatch.security import Principal
from kit.errors import NotFound

router = APIRouter(tags=["push"])

# Only technicians are woken by pushes today (offers); other roles have nothing to subscribe to.
Subscriber = Annotated[Principal, Depends(require_role("technician"))]


class PushKeys(BaseModel):
    p256dh: Annotated[str, Field(min_length=80, max_length=200), AfterValidator(push.check_p256dh)]
    auth: Annotated[str, Field(min_length=16, max_length=100), AfterValidator(push.check_auth)]


class PushSubscriptionCreate(BaseModel):
    """The browser's PushSubscription.toJSON() (its expirationTime is ignored)."""

    endpoint: Annotated[str, Field(min_length=10, max_length=1000), AfterValidator(push.check_endpoint)]
    keys: PushKeys


class PushSubscriptionPublic(BaseModel):
    id: uuid.UUID
    endpoint: str
    created_at: datetime


class VapidPublicKey(BaseModel):
    public_key: str  # the applicationServerKey for pushManager.subscribe, base64url


@router.get("/v1/push/vapid-public-key")
async def vapid_public_key() -> VapidPublicKey:
    """The install's VAPID public key; public by nature."""
    return VapidPublicKey(public_key=push.vapid_public_key())


@router.post("/v1/me/push-subscriptions", status_code=status.HTTP_201_CREATED, responses={
    200: {"model": PushSubscriptionPublic, "description": "Already stored: now the caller's, keys renewed"}})
async def subscribe(body: PushSubscriptionCreate, principal: Subscriber, session: SessionDep,
                    response: Response) -> PushSubscriptionPublic:
    row, created = await push.subscribe_device(session, principal.account_id, endpoint=body.endpoint,
                                               p256dh=body.keys.p256dh, auth=body.keys.auth)
    if not created:
        response.status_code = status.HTTP_200_OK
    return PushSubscriptionPublic.model_validate(row, from_attributes=True)


@router.delete("/v1/me/push-subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(subscription_id: uuid.UUID, principal: Subscriber, session: SessionDep) -> Response:
    if not await push.unsubscribe_device(session, principal.account_id, subscription_id):
        raise NotFound("no such push subscription of yours")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
