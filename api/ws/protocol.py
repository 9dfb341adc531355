"""The websocket message schema (version 1), exported as JSON Schema at /v1/ws/schema.

Every client message carries `v`, `type` and `id`; the server answers each one with `ack`
or `error` carrying the same `id`. A socket opened without an Authorization header starts with
an `auth` message carrying the access token (never put in the URL). Server pushes: `offer` (its
summary, with the order's `sla_deadline`), `offer_withdrawn`, `job_updated`,
`order_cancelled`, `notification`, `status`, `position`, `eta` (the arrival range, on the order
socket and the technician's), `price_change`, `reposition` (a hint to an idle
technician, `area` the GeoJSON point to move towards: `reason` `emergency_cover`, an area below
its emergency reserve, with `station_id` and `station_name`; or `demand`, a neighbouring cell
the look-ahead values rate higher, with `cell` and `distance_m`), `plan_changed` (the technician's day plan of `day` was
planned again: reload it), `pong`, `resync`; on the operations socket
`alert`, `alert_acknowledged`, `order_status`, `certification_queue` (reload the queue) and `hazards` (reload
the open hazards).

Sequence numbers and resume. Every change of an order's status has a `seq`: the id of the order
event that recorded it, increasing along the order's history (not contiguous: ids are shared by
all orders). The order socket's `status` messages carry it (the first one, on connect, the
order's latest), and so do the technician socket's `job_updated` messages sent on (re)connect.
The matching engine's steps (`offer_round`, `escalated`, `alerted`) are order events too: the
order socket sends them as `status` messages with their `action` and the status unchanged.
A client keeps the highest `seq` it has seen and, after reconnecting, sends
`{"v":1,"type":"resume","id":…,"after":N}`: it is acknowledged with the socket's current `seq`,
then the order socket sends every status change after N, in order, from the database; the
technician socket sends its open offers and the state of each current job changed after N.
The server does the same by itself when its own Redis subscription was lost and restored (a
Redis restart or a killed connection): the socket stays open and what was published meanwhile is
resent. The operations socket sends `{"type":"resync"}` then: the console reloads its lists.
A message refused because Redis or the database is unreachable gets an `error` with
`code: "service-unavailable"` and `retry_after_s`; the socket stays open.
"""

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MessageId = Annotated[str, Field(min_length=1, max_length=64)]


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1
    id: MessageId


class Auth(ClientMessage):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


class Location(ClientMessage):
    type: Literal["location"]
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    accuracy: float | None = Field(default=None, ge=0, le=10_000)
    heading: float | None = Field(default=None, ge=0, lt=360)
    speed: float | None = Field(default=None, ge=0, le=100)
    ts: datetime


class GoOnline(ClientMessage):
    type: Literal["go_online"]


class GoOffline(ClientMessage):
    type: Literal["go_offline"]


class Ping(ClientMessage):
    type: Literal["ping"]


class Resume(ClientMessage):
    """Resend what changed after `after`, the highest `seq` the client has seen (0: everything)."""

    type: Literal["resume"]
    after: int = Field(ge=0)


class AcceptOffer(ClientMessage):
    type: Literal["accept_offer"]
    offer_id: str = Field(max_length=64)


class DeclineOffer(ClientMessage):
    type: Literal["decline_offer"]
    offer_id: str = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=200)


class JobStatus(ClientMessage):
    """en_route, arrived, started, completed; `data` carries what each needs (the work
    report for completed, as in POST /v1/jobs/{order_id}/complete)."""

    type: Literal["status"]
    order_id: str = Field(max_length=64)
    status: Literal["en_route", "arrived", "started", "completed"]
    data: dict[str, Any] = Field(default_factory=dict)


TechnicianMessage = Annotated[
    Union[Location, GoOnline, GoOffline, Ping, Resume, AcceptOffer, DeclineOffer, JobStatus], Field(discriminator="type")]
technician_message = TypeAdapter(TechnicianMessage)


class ServerMessage(BaseModel):
    v: Literal[1] = 1
    type: Literal["ack", "error", "offer", "offer_withdrawn", "job_updated", "order_cancelled", "notification", "price_change",
                  "status", "position", "eta", "reposition", "pong", "resync", "alert", "alert_acknowledged", "order_status",
                  "certification_queue", "hazards", "plan_changed"]
    id: str | None
    detail: str | None = None
    seq: int | None = None  # on status and job_updated: the order event's id (see Sequence numbers)


def json_schema() -> dict[str, Any]:
    return {"first_message": Auth.model_json_schema(), "technician_to_server": technician_message.json_schema(),
            "order_socket_to_server": TypeAdapter(Annotated[Union[Ping, Resume], Field(discriminator="type")]).json_schema(),
            "server_to_client": ServerMessage.model_json_schema()}
