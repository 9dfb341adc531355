"""Simulated people per city: technicians (the reference client, made to carry a job across
API restarts), customers who order, open the door, cancel now and then and review, and
meters whose NB-IoT detectors raise gas alarms through the signed webhook."""

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field

import httpx
from rich.console import Console

from app.tech_client import (
    REQUEST_TIMEOUT_S,
    Credentials,
    Doorstep,
    TechnicianClient,
    TechOptions,
)
from dispatch.states import ACTIVE_JOB_STATES

PASSWORD = "demo-password"
TERMINAL = ("settled", "cancelled", "unfulfilled")
QUIET = Console(quiet=True)


@dataclass
class Observed:
    """What the actors saw, to cross-check the database: accept acks per order, errors."""

    accept_acks: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    placed: int = 0
    alarms: int = 0
    reviews: int = 0
    cancels: int = 0
    http_errors: int = 0


class FaultTolerantTechnician(TechnicianClient):
    """The reference client, plus: a job interrupted by a lost API call is picked up again
    while the order is still his, and every accept ack is recorded."""

    def __init__(self, options: TechOptions, doorstep: Doorstep, observed: Observed, name: str) -> None:
        super().__init__(options, QUIET, doorstep)
        self.observed = observed
        self.name = name
        self.journal: deque[str] = deque(maxlen=60)  # what the robot said last, for the kept logs

    def _say(self, text: str) -> None:
        self.journal.append(f"{time.strftime('%H:%M:%S')} {text}")

    async def request(self, message: dict) -> dict:
        reply = await super().request(message)
        if message.get("type") == "accept_offer" and reply.get("order_id"):
            self.observed.accept_acks[reply["order_id"]].append((time.time(), self.name))
        return reply

    async def _job(self, order_id: str) -> None:
        me = asyncio.current_task()
        for attempt in range(30):
            try:
                await super()._job(order_id)
            except Exception as exc:  # the reference client's own failure: the job is retried like a lost call
                self.tally.errors.append(f"job {order_id[:8]}: {exc!r}")
            if self.stop.is_set() or not await self._still_mine(order_id):
                return
            self._finished.discard(order_id)
            if me is not None:
                self._jobs[order_id] = me
            await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))

    async def _still_mine(self, order_id: str) -> bool:
        assert self._http is not None
        for attempt in range(20):
            try:
                response = await self._http.get(f"/v1/orders/{order_id}")
                if response.status_code in (403, 404):
                    return False
                if response.is_success:
                    return response.json()["status"] in ACTIVE_JOB_STATES
            except httpx.HTTPError:
                pass
            await asyncio.sleep(min(5.0, 0.5 * 2 ** attempt))
        return False


class Customer:
    """Orders while `ordering` is set; follows every order of his (placed or raised by his
    detector) to its end: answers the door, sometimes cancels, reviews completed work."""

    def __init__(self, base_url: str, email: str, address_id: str, doorstep: Doorstep, observed: Observed,
                 rng: random.Random, order_every_s: float, cancel_share: float) -> None:
        self.base_url = base_url
        self.email = email
        self.address_id = address_id
        self.doorstep = doorstep
        self.observed = observed
        self.rng = rng
        self.order_every_s = order_every_s
        self.cancel_share = cancel_share
        self.credentials = Credentials(base_url, email=email, password=PASSWORD)
        self.http: httpx.AsyncClient | None = None
        self.following: dict[str, asyncio.Task] = {}

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response | None:
        """One API call, retried with backoff through faults; None when it never got an answer."""
        assert self.http is not None
        for attempt in range(8):
            try:
                response = await self.http.request(method, path, **kwargs)
                if response.status_code < 500:
                    return response
            except httpx.HTTPError:
                pass
            self.observed.http_errors += 1
            await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt) * self.rng.uniform(0.8, 1.2))
        return None

    async def run(self, ordering: asyncio.Event, stop: asyncio.Event, kinds: list[str]) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S, auth=self.credentials) as http:
            self.http = http
            await asyncio.sleep(self.rng.uniform(0, self.order_every_s))
            while not stop.is_set():
                await self._follow_all_mine(stop)
                if ordering.is_set() and len(self.following) < 2:
                    await self._place(self.rng.choice(kinds), stop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.order_every_s * self.rng.uniform(0.7, 1.3))
            for task in self.following.values():
                task.cancel()
            await asyncio.gather(*self.following.values(), return_exceptions=True)

    async def _follow_all_mine(self, stop: asyncio.Event) -> None:
        """Orders raised for this household by its meters (a silent meter, a fault) need someone at the door too."""
        response = await self._call("GET", "/v1/orders", params={"limit": 50})
        if response is None or not response.is_success:
            return
        for order in response.json()["data"]:
            if order["status"] not in (*TERMINAL, "reviewed", "completed") and "payment" not in order["status"]:
                self.follow(order["id"], stop)

    async def _place(self, kind: str, stop: asyncio.Event) -> None:
        key = uuid.uuid4().hex
        response = await self._call("POST", "/v1/orders", headers={"Idempotency-Key": key}, json={
            "kind": kind, "address_id": self.address_id, "description": "fault suite / 故障演练"})
        if response is None or not response.is_success:
            return
        self.observed.placed += 1
        self.follow(response.json()["id"], stop)

    def follow(self, order_id: str, stop: asyncio.Event) -> None:
        if order_id not in self.following:
            self.following[order_id] = asyncio.create_task(self._follow(order_id, stop))

    async def _follow(self, order_id: str, stop: asyncio.Event) -> None:
        self.doorstep.move_in(order_id, lambda: self._answer_door(order_id))
        cancel_at = self.rng.choice(["matching", "accepted", "en_route"]) if self.rng.random() < self.cancel_share else None
        try:
            status = None
            while not stop.is_set():
                response = await self._call("GET", f"/v1/orders/{order_id}")
                if response is not None and response.is_success:
                    status = response.json()["status"]
                if status == cancel_at:
                    cancel_at = None
                    cancelled = await self._call("POST", f"/v1/orders/{order_id}/cancel",
                                                 json={"reason": "fault suite", "reason_code": "changed_mind"})
                    if cancelled is not None and cancelled.is_success:
                        self.observed.cancels += 1
                if status == "completed":
                    await self._review(order_id)
                    return
                if status in (*TERMINAL, "reviewed"):
                    return
                await asyncio.sleep(1.0)
        finally:
            self.doorstep.move_out(order_id)
            self.following.pop(order_id, None)

    async def _answer_door(self, order_id: str) -> str | None:
        response = await self._call("GET", f"/v1/orders/{order_id}/technician")
        return response.json()["code"] if response is not None and response.is_success else None

    async def _review(self, order_id: str) -> None:
        response = await self._call("POST", f"/v1/orders/{order_id}/review", json={
            "stars": self.rng.choice([3, 4, 5, 5]), "tags": ["on_time"], "comment": "fault suite"})
        if response is not None and response.is_success:
            self.observed.reviews += 1


class Detectors:
    """Household methane detectors on NB-IoT (CTWing): registered by the city's admin, then
    alarms pushed through the signed webhook; the household follows the emergency it raised."""

    def __init__(self, base_url: str, city: str, secret: str, observed: Observed, rng: random.Random) -> None:
        self.base_url = base_url
        self.city = city
        self.secret = secret
        self.observed = observed
        self.rng = rng
        self.devices: list[tuple[str, Customer]] = []

    async def register(self, households: list[Customer], customer_ids: dict[str, str]) -> None:
        credentials = Credentials(self.base_url, email=f"admin@{self.city}.gasdispatch.local", password=PASSWORD)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S, auth=credentials) as http:
            for household in households:
                imei = f"86{self.rng.randrange(10**12, 10**13)}"
                for attempt in range(4):
                    try:
                        response = await http.post("/v1/devices", json={
                            "kind": "detector", "protocol": "nbiot", "external_id": imei,
                            "customer_id": customer_ids[household.email], "address_id": household.address_id,
                            "installed_at": "2026-01-01T00:00:00Z", "report_interval_s": 3600,
                            "platform": "ctwing", "product": "17000001"})
                    except httpx.HTTPError:
                        await asyncio.sleep(2 ** attempt)
                        continue
                    if response.is_success:
                        self.devices.append((imei, household))
                    break

    async def alarm(self, stop: asyncio.Event) -> bool:
        if not self.devices:
            return False
        from meters.nbiot import sign

        imei, household = self.rng.choice(self.devices)
        body = json.dumps({"messageType": "dataReport", "productId": "17000001", "IMEI": imei,
                           "timestamp": int(time.time() * 1000), "upPacketSN": self.rng.randrange(10**9),
                           "payload": {"serviceData": {"gas_value": 40, "gas_sensor_state": 1}}}).encode()
        for attempt in range(6):
            stamp = str(int(time.time()))
            try:
                async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
                    response = await http.post("/v1/telemetry/ctwing", content=body, headers={
                        "X-Timestamp": stamp, "X-Signature": sign(self.secret, stamp, body),
                        "Content-Type": "application/json"})
                if response.is_success:
                    self.observed.alarms += 1
                    for order_id in response.json().get("order_ids", []):
                        household.follow(order_id, stop)
                    return True
                if response.status_code < 500:
                    return False
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5 * 2 ** attempt)
        return False


def technician_options(base_url: str, email: str, lon: float, lat: float, door_wait_s: float) -> TechOptions:
    return TechOptions(base_url=base_url, lon=lon, lat=lat, email=email, password=PASSWORD, auto_accept=True,
                       speed_kmh=1000.0, interval_s=1.5, door_wait_s=door_wait_s)


async def stop_technician(client: TechnicianClient, task: asyncio.Task) -> None:
    client.stop.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    if not task.done():
        task.cancel()

