"""The reference technician client, and a customer robot so the demo runs with nobody at the keyboard.

The technician speaks only the public protocol: the websocket for positions, offers and job
states, REST for the one-time code. The customer robot uses only the customer's API.

The door check stays honest. In life the customer reads the one-time code off their phone and
says it aloud; no API carries that speech. `Doorstep` models it in-process: the technician
knocks, the robot living at that order's address reads its own identity card
(GET /v1/orders/{id}/technician) and answers with the code, which the technician then submits
(POST /v1/jobs/{id}/verify-code). With nobody behind the door, an interactive client asks for
the code on stdin; an unattended one keeps trying to check in, which succeeds once the customer
verifies the QR or waives the check in their app.
"""

import asyncio
import contextlib
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import typer
import websockets
from rich.console import Console
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dispatch.states import ACTIVE_JOB_STATES

EARTH_M_PER_DEG = 111_320.0
KNOCK_WITHIN_M = 100.0
MAX_BACKOFF_S = 10.0
REQUEST_TIMEOUT_S = 10.0
ONLINE_FIRST_PAUSE_S = 0.5
# Errors that pass by themselves: worth trying again (others need a person: certificates, a ban).
RETRYABLE_CODES = frozenset({"service-unavailable", "internal-error", "throttled"})


class ClientError(Exception):
    """The server answered a client message with `error`."""

    def __init__(self, reply: dict) -> None:
        super().__init__(reply.get("detail") or reply.get("code") or "error")
        self.code = reply.get("code")


JOB_TRIES = 12  # about a minute and a half of a server away before a job is given up


def _transient(exc: Exception) -> bool:
    """The server or what it needs is away for now; the same step may succeed later."""
    if isinstance(exc, ClientError):
        return exc.code in RETRYABLE_CODES
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular: exact enough for a city and for a simulated drive."""
    dx = (b[0] - a[0]) * EARTH_M_PER_DEG * math.cos(math.radians((a[1] + b[1]) / 2))
    dy = (b[1] - a[1]) * EARTH_M_PER_DEG
    return math.hypot(dx, dy)


def step_toward(here: tuple[float, float], target: tuple[float, float], metres: float) -> tuple[float, float]:
    total = distance_m(here, target)
    if total <= metres or total == 0:
        return target
    f = metres / total
    return here[0] + (target[0] - here[0]) * f, here[1] + (target[1] - here[1]) * f


CLOSE_UNAUTHENTICATED = 4401


class Credentials(httpx.Auth):
    """A bearer session for httpx and the socket: starts from a token or a login, and renews the
    access token (refresh token, else the password) when the server refuses it — a 401, or the
    socket closed with 4401 as the token expired — so a long job never signs the client out."""

    def __init__(self, base_url: str, *, token: str | None = None, email: str | None = None,
                 password: str | None = None) -> None:
        self.base_url = base_url
        self.access_token = token
        self.refresh_token: str | None = None
        self.email, self.password = email, password
        self._lock = asyncio.Lock()

    async def _auth_call(self, path: str, body: dict) -> bool:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            response = await http.post(path, json=body)
        if not response.is_success:
            return False
        tokens = response.json()
        self.access_token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]
        return True

    async def renew(self, stale: str | None) -> bool:
        """A fresh access token unless somebody renewed `stale` meanwhile; False when signed out."""
        async with self._lock:
            if self.access_token != stale:
                return self.access_token is not None
            if self.refresh_token and await self._auth_call("/v1/auth/refresh", {"refresh_token": self.refresh_token}):
                return True
            if self.email and self.password:
                return await self._auth_call("/v1/auth/login", {"email": self.email, "password": self.password})
            return False

    async def ensure(self) -> None:
        if self.access_token is None and not await self.renew(None):
            raise ClientError({"code": "authentication-failed", "detail": "cannot sign in: check the token or password"})

    async def async_auth_flow(self, request: httpx.Request):  # noqa: ANN201
        token = self.access_token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and await self.renew(token):
            request.headers["Authorization"] = f"Bearer {self.access_token}"
            yield request


class Doorstep:
    """The meeting at the door, which has no API: whoever lives at an order's address answers."""

    def __init__(self) -> None:
        self._residents: dict[str, Callable[[], Awaitable[str | None]]] = {}

    def move_in(self, order_id: str, answer: Callable[[], Awaitable[str | None]]) -> None:
        self._residents[order_id] = answer

    def move_out(self, order_id: str) -> None:
        self._residents.pop(order_id, None)

    async def knock(self, order_id: str) -> str | None:
        answer = self._residents.get(order_id)
        return await answer() if answer else None


@dataclass
class TechOptions:
    base_url: str
    lon: float
    lat: float
    token: str | None = None
    email: str | None = None
    password: str | None = None
    auto_accept: bool = False
    speed_kmh: float = 30.0
    interval_s: float = 2.0
    max_jobs: int | None = None
    duration_s: float | None = None
    interactive: bool = False  # ask for the door code on stdin when nobody answers the doorstep
    door_wait_s: float = 600.0  # nobody opens the door this long: report no access and leave


@dataclass
class Tally:
    offers: int = 0
    accepted: int = 0
    completed: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


class TechnicianClient:
    def __init__(self, options: TechOptions, console: Console, doorstep: Doorstep | None = None) -> None:
        self.o = options
        self.console = console
        self.doorstep = doorstep or Doorstep()
        self.here = (options.lon, options.lat)
        self.target: tuple[float, float] | None = None
        self._one_job_at_a_time = asyncio.Lock()  # one van: jobs held at once are driven in turn
        self.tally = Tally()
        self.stop = asyncio.Event()
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._pending: dict[str, asyncio.Future] = {}
        self._jobs: dict[str, asyncio.Task] = {}
        self._seen_offers: set[str] = set()
        self._finished: set[str] = set()
        self._near = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._credentials = Credentials(options.base_url, token=options.token, email=options.email,
                                        password=options.password)

    # -- plumbing ----------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.console.print(f"[dim]{datetime.now():%H:%M:%S}[/] [bold cyan]tech[/] {text}")

    async def request(self, message: dict) -> dict:
        """Send one message and wait for its ack. After a lost socket the same id is sent again
        on the next connection; the server answers a repeated id without acting twice."""
        message = {"v": 1, "id": uuid.uuid4().hex, **message}
        still_running = 0  # answers "duplicate": the first try is still being acted on
        while not self.stop.is_set():
            await self._connected.wait()
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[message["id"]] = future
            ws = self._ws
            try:
                await ws.send(json.dumps(message))
                reply = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
            except TimeoutError:
                # An open socket that stopped answering is replaced, not waited on forever.
                self._say(f"[yellow]no answer to {message['type']} in {REQUEST_TIMEOUT_S:g} s; reconnecting[/]")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
                await asyncio.sleep(0.2)
                continue
            except (ConnectionClosed, ConnectionError):
                await asyncio.sleep(0.2)
                continue
            finally:
                self._pending.pop(message["id"], None)
            if reply["type"] == "error":
                raise ClientError(reply)
            if reply.get("duplicate"):  # ask again for the first try's reply, less and less often
                still_running += 1
                await asyncio.sleep(min(0.25 * 2 ** still_running, 5.0))
                continue
            return reply
        raise ClientError({"code": "stopped", "detail": "the client is stopping"})

    async def run(self) -> Tally:
        await self._credentials.ensure()
        async with httpx.AsyncClient(base_url=self.o.base_url, timeout=REQUEST_TIMEOUT_S, auth=self._credentials) as http:
            self._http = http
            tasks = [asyncio.create_task(self._connection_loop()), asyncio.create_task(self._drive())]
            try:
                if self.o.duration_s is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), self.o.duration_s)
                else:
                    await self.stop.wait()
                if self._connected.is_set():  # best effort: a lost socket goes stale on the server anyway
                    with contextlib.suppress(ClientError, TimeoutError, ConnectionClosed):
                        await asyncio.wait_for(self._ws.send(json.dumps(
                            {"v": 1, "type": "go_offline", "id": uuid.uuid4().hex})), 2)
            finally:
                self.stop.set()
                for task in [*tasks, *self._jobs.values()]:
                    task.cancel()
                await asyncio.gather(*tasks, *self._jobs.values(), return_exceptions=True)
        return self.tally

    async def _connection_loop(self) -> None:
        url = self.o.base_url.replace("http", "ws", 1) + "/v1/ws/technician"
        backoff = 0.5
        first = True
        while not self.stop.is_set():
            token = self._credentials.access_token
            try:
                async with websockets.connect(url, open_timeout=REQUEST_TIMEOUT_S,
                                              additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                    self._ws = ws
                    self._connected.set()
                    backoff = 0.5
                    if not first:
                        self.tally.reconnects += 1
                    first = False
                    online = asyncio.create_task(self._go_online())
                    try:
                        async for raw in ws:
                            await self._dispatch(json.loads(raw))
                    finally:
                        online.cancel()
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == CLOSE_UNAUTHENTICATED and await self._renewed(token):
                    continue
                self._say(f"[yellow]socket lost ({type(exc).__name__}); reconnecting in {backoff:.1f} s[/]")
            except (OSError, InvalidStatus, TimeoutError) as exc:
                self._say(f"[yellow]socket lost ({type(exc).__name__}); reconnecting in {backoff:.1f} s[/]")
            finally:
                self._connected.clear()
            if self.stop.is_set():
                return
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _renewed(self, stale: str | None) -> bool:
        """After the socket was closed for its token: True to reconnect at once; False to back off
        (renewal unreachable for now) or stop (signed out for good)."""
        try:
            if await self._credentials.renew(stale):
                self._say("token renewed; reconnecting")
                return True
        except httpx.HTTPError as exc:
            self._say(f"[yellow]cannot renew the token yet ({type(exc).__name__})[/]")
            return False
        self.tally.errors.append("signed out: the token expired and cannot be renewed")
        self.stop.set()
        return False

    async def _go_online(self) -> None:
        """Once per connection; a refusal the server may lift by itself (Redis or the database
        unavailable, an internal error) is retried with a growing pause, never given up silently."""
        pause = ONLINE_FIRST_PAUSE_S
        while True:
            try:
                reply = await self.request({"type": "go_online"})
            except ClientError as exc:
                if exc.code not in RETRYABLE_CODES:
                    self.tally.errors.append(f"cannot go online: {exc}")
                    self._say(f"[red]cannot go online: {exc}[/]")
                    return
                self._say(f"[yellow]going online failed ({exc.code}); retrying in {pause:.1f} s[/]")
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(pause * 2, MAX_BACKOFF_S)
                continue
            self._say(f"online ({reply['status']}) at {self.here[0]:.5f},{self.here[1]:.5f}")
            return

    async def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind in ("ack", "error", "pong"):
            future = self._pending.get(message.get("id") or "")
            if future is not None and not future.done():
                future.set_result(message)
            elif kind == "error":
                self.tally.errors.append(str(message.get("detail")))
        elif kind == "offer":
            await self._on_offer(message["offer"])
        elif kind == "offer_withdrawn":
            self._say(f"offer {message['offer_id'][:8]} withdrawn ({message.get('reason')})")
        elif kind == "order_cancelled" or (kind == "job_updated" and message.get("status") == "matching"):
            job = self._jobs.pop(message.get("order_id", ""), None)  # cancelled, or pre-empted by an emergency
            if job is not None:
                job.cancel()  # its own clean-up clears the target if it was driving
                self._say(f"[red]order {message['order_id'][:8]} taken away ({message.get('status')})[/]")
        elif kind == "job_updated" and message.get("status") in ACTIVE_JOB_STATES:
            self._take_job(message["order_id"])  # a job held before a restart: carry on with it
        elif kind == "notification":
            self._say(f"[dim]notification: {message['notification']['title']}[/]")

    async def _on_offer(self, offer: dict) -> None:
        if offer["offer_id"] in self._seen_offers:
            return  # resent after a reconnect
        self._seen_offers.add(offer["offer_id"])
        self.tally.offers += 1
        self._say(f"[bold]offer[/] {offer['kind']} ({offer['priority']}) {offer['distance_m']} m, "
                  f"~{offer['eta_min']} min, expires {offer['expires_at']}")
        if not self.o.auto_accept:
            return
        if self._jobs or self._done():
            asyncio.create_task(self._decline(offer["offer_id"]))
            return
        asyncio.create_task(self._accept(offer))

    async def _decline(self, offer_id: str) -> None:
        with contextlib.suppress(ClientError):
            await self.request({"type": "decline_offer", "offer_id": offer_id, "reason": "busy"})

    async def _accept(self, offer: dict) -> None:
        try:
            reply = await self.request({"type": "accept_offer", "offer_id": offer["offer_id"]})
        except ClientError as exc:
            self._say(f"[yellow]accept refused: {exc}[/]")
            return
        self.tally.accepted += 1
        self._say(f"[green]accepted[/] order {reply['order_id'][:8]}")
        self._finished.discard(reply["order_id"])  # a job taken away earlier (pre-empted) may come back
        self._take_job(reply["order_id"])

    def _take_job(self, order_id: str) -> None:
        # The ack of an accept and the pushed job_updated race; late pushes follow a finished job.
        if order_id in self._jobs or order_id in self._finished:
            return
        self._jobs[order_id] = asyncio.create_task(self._job(order_id))

    def _done(self) -> bool:
        return self.o.max_jobs is not None and self.tally.completed >= self.o.max_jobs

    # -- movement ----------------------------------------------------------------------------

    async def _drive(self) -> None:
        """A fix every interval (jittered start); moving only while there is somewhere to go."""
        await asyncio.sleep(random.uniform(0, self.o.interval_s))
        last = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if self.target is not None:
                self.here = step_toward(self.here, self.target, self.o.speed_kmh / 3.6 * (now - last))
            last = now
            if self._connected.is_set():
                asyncio.create_task(self._send_fix())
            await asyncio.sleep(self.o.interval_s)

    async def _send_fix(self) -> None:
        moving = self.target is not None and self.here != self.target
        try:
            await self.request({"type": "location", "lon": self.here[0], "lat": self.here[1], "accuracy": 8.0,
                                "speed": min(100.0, self.o.speed_kmh / 3.6) if moving else 0.0,
                                "ts": datetime.now(timezone.utc).isoformat()})
        except ClientError as exc:
            self.tally.errors.append(f"location: {exc}")
            return
        if self.target is not None and distance_m(self.here, self.target) <= KNOCK_WITHIN_M:
            self._near.set()

    # -- a job from acceptance to completion -------------------------------------------------

    async def _status(self, order_id: str, status: str, data: dict | None = None) -> dict:
        reply = await self.request({"type": "status", "order_id": order_id, "status": status, "data": data or {}})
        self._say(f"order {order_id[:8]} → [bold]{reply['status']}[/]")
        return reply

    async def _job(self, order_id: str) -> None:
        """Drive to the job and do it; a server that is down for a while (restarting, its database
        or Redis away) interrupts the job, it does not end it: he carries on from the order's
        state, at growing intervals, and gives up (said and counted) only after JOB_TRIES."""
        async with self._one_job_at_a_time:
            try:
                for attempt in range(1, JOB_TRIES + 1):
                    try:
                        await self._drive_and_work(order_id)
                        return
                    except (ClientError, httpx.HTTPError) as exc:
                        if not _transient(exc) or attempt == JOB_TRIES:
                            self.tally.errors.append(f"job {order_id[:8]}: {exc}")
                            self._say(f"[red]job {order_id[:8]} stopped: {exc}[/]")
                            return
                        delay = min(0.5 * 2 ** attempt, MAX_BACKOFF_S)
                        self._say(f"[yellow]job {order_id[:8]} interrupted ({exc}); carrying on in {delay:g} s[/]")
                        await asyncio.sleep(delay)
            finally:
                self.target = None
                self._jobs.pop(order_id, None)
                self._finished.add(order_id)
                if self._done():
                    self.stop.set()

    async def _drive_and_work(self, order_id: str) -> None:
        """From the order's current state to its completion."""
        assert self._http is not None
        order = (await self._http.get(f"/v1/orders/{order_id}")).raise_for_status().json()
        self.target = tuple(order["location"]["coordinates"])  # exact once accepted
        self._near.clear()
        status = order["status"]
        if status not in ACTIVE_JOB_STATES:
            return  # done meanwhile (or taken away): nothing left to do
        if status == "accepted":
            await self._status(order_id, "en_route")
            status = "en_route"
        if status == "en_route":
            self._say(f"driving {distance_m(self.here, self.target):.0f} m at {self.o.speed_kmh:g} km/h")
            await self._near.wait()
            if not await self._check_in(order_id):
                return
            status = "arrived"
        if status == "arrived":
            await self._status(order_id, "started")
            await asyncio.sleep(min(3.0, self.o.interval_s))
        price = order["price_estimate"]
        reply = await self._status(order_id, "completed", {
            "work_done": "检查并更换了灶具连接软管，泄漏测试通过 / replaced the hose, leak test passed",
            "final_price_minor": price["amount_minor"], "currency": price["currency"]})
        if reply.get("price_change"):
            self._say("final price awaits the customer's approval")
        self.tally.completed += 1

    async def _check_in(self, order_id: str) -> bool:
        """At the door: settle identity with the customer's code, then check in (geofenced).
        False when nobody opened within `door_wait_s`: no access is reported and he leaves."""
        assert self._http is not None
        knock = True
        give_up_at = time.monotonic() + self.o.door_wait_s
        while True:
            if knock:
                await self._knock(order_id)
            try:
                await self._status(order_id, "arrived")
                return True
            except ClientError as exc:
                if exc.code == "identity-not-verified" and time.monotonic() > give_up_at:
                    response = await self._http.post(f"/v1/jobs/{order_id}/no-access",
                                                     json={"photo_ref": f"tech-client:door:{order_id}"})
                    response.raise_for_status()
                    self._say(f"[yellow]nobody opened in {self.o.door_wait_s:g} s: no access reported[/]")
                    return False
                if exc.code not in ("identity-not-verified", "no-fresh-position", "too-far-from-address",
                                    "implausible-arrival"):
                    raise
                knock = exc.code == "identity-not-verified"  # nobody answered, or the code was lost: knock again
                self._say(f"[yellow]cannot check in yet ({exc.code}); waiting[/]")
                await asyncio.sleep(self.o.interval_s)

    async def _knock(self, order_id: str) -> None:
        assert self._http is not None
        self._say("at the door, knocking")
        code = await self.doorstep.knock(order_id)
        if code is None and self.o.interactive:
            code = (await asyncio.to_thread(input, "one-time code from the customer (empty to wait): ")).strip() or None
        if code is not None:
            response = await self._http.post(f"/v1/jobs/{order_id}/verify-code", json={"code": code})
            self._say(f"code {'accepted' if response.is_success else 'refused: ' + response.text}")


@dataclass
class CustomerOptions:
    base_url: str
    token: str | None = None
    email: str | None = None
    password: str | None = None
    order_every_s: float = 20.0
    kind: str = "repair"


class CustomerRobot:
    """Places an order whenever it has none open, answers the door with its code, reviews the work."""

    def __init__(self, options: CustomerOptions, console: Console, doorstep: Doorstep) -> None:
        self.o = options
        self.console = console
        self.doorstep = doorstep
        self.placed: list[str] = []
        self.reviewed: list[str] = []
        self._http: httpx.AsyncClient | None = None

    def _say(self, text: str) -> None:
        self.console.print(f"[dim]{datetime.now():%H:%M:%S}[/] [bold magenta]customer[/] {text}")

    async def run(self, stop: asyncio.Event) -> None:
        credentials = Credentials(self.o.base_url, token=self.o.token, email=self.o.email, password=self.o.password)
        await credentials.ensure()
        async with httpx.AsyncClient(base_url=self.o.base_url, timeout=REQUEST_TIMEOUT_S, auth=credentials) as http:
            self._http = http
            addresses = (await http.get("/v1/customers/me/addresses")).raise_for_status().json()
            address = addresses["data"][0]
            while not stop.is_set():
                try:
                    await self._one_order(address, stop)
                except httpx.HTTPError as exc:
                    self._say(f"[red]{exc}[/]")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.o.order_every_s)

    async def _one_order(self, address: dict, stop: asyncio.Event) -> None:
        assert self._http is not None
        created = await self._http.post("/v1/orders", json={
            "kind": self.o.kind, "address_id": address["id"], "description": "灶具漏气味 / smell of gas at the hob"},
        )
        order = created.raise_for_status().json()
        order_id = order["id"]
        self.placed.append(order_id)
        self._say(f"placed order {order_id[:8]} ({self.o.kind}) at {address.get('line', '')}")
        self.doorstep.move_in(order_id, lambda: self._answer_door(order_id))
        try:
            status = order["status"]
            # Followed to the end even after `stop`: run_demo bounds the wait.
            while status not in ("completed", "cancelled", "unfulfilled", "settled"):
                await asyncio.sleep(1.0)
                current = (await self._http.get(f"/v1/orders/{order_id}")).raise_for_status().json()
                if current["status"] != status:
                    status = current["status"]
                    self._say(f"order {order_id[:8]} is {status}")
            if status == "completed":
                await self._review(order_id)
        finally:
            self.doorstep.move_out(order_id)

    async def _answer_door(self, order_id: str) -> str | None:
        """Read the code off the technician's identity card in the app, as a person would."""
        assert self._http is not None
        response = await self._http.get(f"/v1/orders/{order_id}/technician")
        if not response.is_success:
            return None
        card = response.json()
        self._say(f"door: {card['name']}, certificate {card['certification_number']}; code {card['code']}")
        return card["code"]

    async def _review(self, order_id: str) -> None:
        assert self._http is not None
        response = await self._http.post(f"/v1/orders/{order_id}/review", json={
            "stars": 5, "tags": ["on_time", "showed_credentials"], "comment": "师傅很专业 / very professional"})
        if response.is_success:
            self.reviewed.append(order_id)
            self._say(f"[green]reviewed order {order_id[:8]}[/]")
        else:
            self._say(f"[red]review refused: {response.text}[/]")


async def run_demo(tech: TechOptions, customers: list[CustomerOptions], console: Console) -> tuple[Tally, list[CustomerRobot]]:
    """One technician client and zero or more customer robots sharing one doorstep."""
    doorstep = Doorstep()
    client = TechnicianClient(tech, console, doorstep)
    robots = [CustomerRobot(c, console, doorstep) for c in customers]
    robot_tasks = [asyncio.create_task(r.run(client.stop)) for r in robots]
    try:
        tally = await client.run()
    finally:
        # Give robots a moment to review the last completed order before they stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wait(robot_tasks), 5)
        for task in robot_tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                console.print(f"[red]customer robot failed: {task.exception()!r}[/]")
            task.cancel()
    return tally, robots


def command(
    base_url: str = typer.Option("http://127.0.0.1:8000", help="The API (and websocket) base URL."),
    token: str | None = typer.Option(None, help="A technician bearer token; or log in with --email/--password."),
    email: str | None = typer.Option(None),
    password: str | None = typer.Option(None),
    lon: float = typer.Option(..., help="Starting position."),
    lat: float = typer.Option(...),
    auto_accept: bool = typer.Option(False, help="Accept offers and drive each job to completion."),
    speed_kmh: float = typer.Option(30.0, min=1, max=150, help="Simulated driving speed."),
    interval_s: float = typer.Option(2.0, min=0.2, help="Seconds between position fixes."),
    max_jobs: int | None = typer.Option(None, min=1, help="Stop after this many completed jobs."),
    duration_s: float | None = typer.Option(None, min=1, help="Stop after this many seconds."),
    customer: list[str] = typer.Option([], help="Also run a customer robot for this account (repeatable): it "
                                                "places orders, answers the door with its code, reviews."),
    customer_password: str | None = typer.Option(None, help="The robots' password (default: --password)."),
    order_every_s: float = typer.Option(20.0, min=1, help="A robot's pause between its orders."),
) -> None:
    """Run the reference technician client: online, positions every few seconds, offers, jobs."""
    console = Console()
    if token is None and not (email and password):
        console.print("[red]give --token, or --email and --password[/]")
        raise typer.Exit(2)
    tech = TechOptions(base_url=base_url, lon=lon, lat=lat, token=token, email=email, password=password,
                       auto_accept=auto_accept, speed_kmh=speed_kmh, interval_s=interval_s, max_jobs=max_jobs,
                       duration_s=duration_s, interactive=sys.stdin.isatty())
    robots = [CustomerOptions(base_url=base_url, email=e, password=customer_password or password,
                              order_every_s=order_every_s) for e in customer]
    tally, customers = asyncio.run(run_demo(tech, robots, console))
    console.print_json(data={"offers": tally.offers, "accepted": tally.accepted, "completed": tally.completed,
                             "reviewed": sum(len(r.reviewed) for r in customers), "reconnects": tally.reconnects,
                             "errors": tally.errors})
