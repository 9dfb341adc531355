"""The payment provider as the faults see it: a proxy in front of the Stripe-compatible
server that, while a fault is on, declines authorisations, lets calls time out, or answers
slowly (2 s). The shared test server stays untouched."""

import asyncio
from collections import Counter

import httpx
from aiohttp import web

DECLINE = {"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                     "message": "Your card was declined.", "param": ""}}
SLOW_S = 2.0


class ProviderProxy:
    def __init__(self, upstream: str, port: int, timeout_hang_s: float) -> None:
        self.upstream = upstream
        self.port = port
        self.timeout_hang_s = timeout_hang_s
        self.mode = "normal"
        self.affected: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def start(self) -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._http.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        is_authorisation = request.method == "POST" and request.path == "/v1/payment_intents"
        if mode == "decline" and is_authorisation:
            self.affected["declined"] += 1
            return web.json_response(DECLINE, status=402)
        if mode == "timeout" and request.path.startswith("/v1/"):
            self.affected["timed_out"] += 1
            await asyncio.sleep(self.timeout_hang_s)
            if request.transport is not None:
                request.transport.close()  # no answer at all: the client sees a broken connection
            raise asyncio.CancelledError
        if mode == "slow":
            self.affected["slowed"] += 1
            await asyncio.sleep(SLOW_S)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        response = await self._http.request(request.method, request.path_qs, content=body, headers=headers)
        passed = {k: v for k, v in response.headers.items()
                  if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
        return web.Response(status=response.status_code, body=response.content, headers=passed)


async def list_all(upstream: str, api_key: str, path: str) -> list[dict]:
    """Every object of a Stripe list endpoint, straight from the server (not through the proxy)."""
    found: list[dict] = []
    after: str | None = None
    async with httpx.AsyncClient(base_url=upstream, timeout=60, headers={"Authorization": f"Bearer {api_key}"}) as http:
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            page = (await http.get(path, params=params)).raise_for_status().json()
            found.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                return found
            after = page["data"][-1]["id"]

