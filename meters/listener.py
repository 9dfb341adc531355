"""The concentrator TCP server (asyncio).

Handshake, on TLS: the concentrator's first line is `AUTH <code> <token>\\n` (ASCII, at most
256 bytes, within 10 s). The server answers `OK\\n` and from then on the stream carries
CJ/T 188 or M-Bus frames both ways, or `ERR auth\\n` and closes. The token was issued once at
registration (`POST /v1/concentrators`) and is stored hashed.

Legacy concentrators that cannot do TLS connect to a separate plain port, only when
`meters_plain_tcp_enabled` is set and only from `meters_plain_tcp_allowed` addresses; they
may send the AUTH line, otherwise the meter addresses in their frames identify them.

Each read is one batch: frames reassembled (split and concatenated frames, garbage skipped
and counted), decoded, ingested and committed in one session, then queued valve commands are
written to the connection that carries the target meter: at once for a new alarm, and as soon
as an authenticated concentrator (re)connects for the devices bound to it (a legacy connection:
once a meter's first frame arrives). A meter reporting through a concentrator it is not bound
to is quarantined and never routed to that connection.

Every rejection is counted (Prometheus, on the listener's own port: `start_metrics_server`)
and logged once per reason per connection; the connection's counts are logged when it closes.
"""

import asyncio
import gc
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import structlog
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.errors import AuthenticationFailed
from meters import ingest
from meters.models import Concentrator, Device, ValveCommand
from meters.protocols import FrameError
from meters.protocols.stream import FrameReassembler
from meters.service import authenticate_concentrator

log = structlog.get_logger(__name__)

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]
HANDSHAKE_TIMEOUT_S = 10.0
MAX_AUTH_LINE = 256
READ_SIZE = 1 << 16
_AUTH = b"AUTH "


def freeze_startup_heap() -> None:
    """Once the listener process is set up: take what is alive now (modules, settings, ORM
    metadata) out of the cycle collector's sight. A batch's readings outlive the young
    collections, so full ones come often, and each would walk the whole heap again (a quarter
    of the listener's CPU at 20,000 readings/s). Reference counting still frees these objects."""
    gc.collect()
    gc.freeze()


def start_metrics_server(host: str, port: int) -> tuple[object, object]:
    """Prometheus /metrics of this process on its own port (a thread); returns (server,
    thread), `server.server_port` is the port and `server.shutdown()` stops it."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host)


class ConnectionLog:
    """Rejections of one connection: the first of each reason is logged at once, the counts
    when the connection closes."""

    def __init__(self, peer: str) -> None:
        self.peer, self.source = peer, "?"
        self.rejections: Counter[str] = Counter()
        self.frames = 0

    def reject(self, reason: str, count: int = 1, *, metric: bool = True) -> None:
        if metric:
            ingest.REJECTED.labels("tcp", reason).inc(count)
        if reason not in self.rejections:
            log.warning("meters.frame_rejected", reason=reason, peer=self.peer, source=self.source)
        self.rejections[reason] += count

    def close(self) -> None:
        if self.rejections:
            log.warning("meters.connection_rejections", peer=self.peer, source=self.source, frames=self.frames,
                        rejections=dict(self.rejections))


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class ConcentratorServer:
    def __init__(
        self, *, session_factory: SessionFactory, redis: Redis, tz: ZoneInfo,
        ingestor: ingest.Ingestor | None = None, plain_allowed: frozenset[str] = frozenset(),
    ) -> None:
        self.session_factory = session_factory
        self.redis = redis
        self.tz = tz
        self.ingestor = ingestor or ingest.Ingestor()
        self.plain_allowed = plain_allowed
        # meter external id -> the connection that last carried its frames
        self.routes: dict[str, asyncio.StreamWriter] = {}
        self.garbage_bytes = 0

    async def start(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None) -> asyncio.Server:
        """TLS when a context is given; a plain server only serves `plain_allowed` addresses."""
        return await asyncio.start_server(self._handle, host, port, ssl=ssl_context)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        conn = ConnectionLog(peer)
        try:
            identified = await asyncio.wait_for(self._identify(reader, writer, peer, conn), HANDSHAKE_TIMEOUT_S)
            if identified is None:
                return
            source, first_bytes = identified
            conn.source = source
            if source.startswith("concentrator:"):
                await self._reconnected(source.removeprefix("concentrator:"), writer)
            reassembler = FrameReassembler()
            data = first_bytes or await reader.read(READ_SIZE)
            while data:
                if not await self._process(reassembler, data, writer, source, conn):
                    return
                data = await reader.read(READ_SIZE)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("meters.connection_dropped", peer=peer, error=type(exc).__name__)
        finally:
            for external_id in [k for k, w in self.routes.items() if w is writer]:
                del self.routes[external_id]
            conn.close()
            writer.close()

    async def _reconnected(self, code: str, writer: asyncio.StreamWriter) -> None:
        """Route the concentrator's bound devices to this connection and send what waits for them."""
        async with self.session_factory() as session:
            bound = (await session.execute(select(Device.external_id).join(
                Concentrator, Concentrator.id == Device.concentrator_id).where(Concentrator.code == code))).scalars().all()
        for external_id in bound:
            self.routes[external_id] = writer
        if bound:
            await self.pump_commands(bound)

    async def _identify(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, conn: ConnectionLog,
    ) -> tuple[str, bytes] | None:
        """(source label, bytes already read that belong to the frame stream), or None."""
        plain = writer.get_extra_info("ssl_object") is None
        if plain and peer not in self.plain_allowed:
            conn.reject("address not allowed")
            return None
        head = await reader.read(len(_AUTH))
        while head and len(head) < len(_AUTH) and _AUTH.startswith(head):
            more = await reader.read(len(_AUTH) - len(head))
            if not more:
                break
            head += more
        if not head.startswith(_AUTH):
            if plain:
                return f"legacy:{peer}", head
            return await self._refuse(writer, conn, "auth required")
        line = await reader.readuntil(b"\n") if len(head) == len(_AUTH) else b""
        parts = line[:MAX_AUTH_LINE].decode("ascii", "replace").split()
        if len(parts) != 2:
            return await self._refuse(writer, conn, "malformed auth")
        try:
            async with self.session_factory() as session:
                concentrator = await authenticate_concentrator(session, parts[0], parts[1])
        except AuthenticationFailed:
            return await self._refuse(writer, conn, "bad credentials")
        writer.write(b"OK\n")
        await writer.drain()
        return f"concentrator:{concentrator.code}", b""

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, conn: ConnectionLog, reason: str) -> None:
        conn.reject(reason)
        writer.write(b"ERR auth\n")
        await writer.drain()
        return None

    async def _process(
        self, reassembler: FrameReassembler, data: bytes, writer: asyncio.StreamWriter, source: str,
        conn: ConnectionLog,
    ) -> bool:
        garbage_before = reassembler.garbage_bytes
        frames = reassembler.feed(data)
        skipped = reassembler.garbage_bytes - garbage_before
        if skipped:
            self.garbage_bytes += skipped
            ingest.GARBAGE_BYTES.inc(skipped)
            conn.reject("garbage bytes", skipped, metric=False)
        if not frames:
            return True
        ingest.FRAMES.labels("tcp").inc(len(frames))
        conn.frames += len(frames)
        now = datetime.now(timezone.utc)
        reports = []
        for frame in frames:
            try:
                report = ingest.telemetry_from_frame(frame, now, self.tz)
            except FrameError as exc:
                conn.reject(exc.reason)
                continue
            if report is not None:
                reports.append(report)
        if not reports:
            return True
        try:
            async with self.session_factory() as session:
                result = await self.ingestor.ingest(session, self.redis, reports, channel="tcp", source=source, now=now)
                # A legacy connection's meters are known once they report: what waits for them goes now.
                newly_routed = [e for e in result.accepted if self.routes.get(e) is not writer]
                waiting = await self._queued(session, newly_routed) if newly_routed else []
        except Exception:
            # Nothing was acknowledged: dropping the connection makes the concentrator resend.
            log.exception("meters.ingest_failed", source=source, reports=len(reports))
            return False
        for reason, count in result.quarantine_reasons.items():
            conn.reject(f"quarantined: {reason}", count, metric=False)  # counted by the quarantine metric
        for external_id in result.accepted:
            self.routes[external_id] = writer
        if result.commands or waiting:  # one write per command, even if it is both new and waiting
            await self.send_commands(list({c[2]: c for c in waiting + result.commands}.values()))
        return True

    async def send_commands(self, commands: list[tuple[str, str, object]]) -> int:
        """Write commands to connected concentrators and mark them sent; others stay queued."""
        sent = []
        for external_id, frame_hex, command_id in commands:
            writer = self.routes.get(external_id)
            if writer is None or writer.is_closing():
                continue
            writer.write(bytes.fromhex(frame_hex))
            sent.append(command_id)
        if not sent:
            return 0
        async with self.session_factory() as session:
            await session.execute(update(ValveCommand).where(ValveCommand.id.in_(sent), ValveCommand.status == "queued")
                                  .values(status="sent", sent_at=datetime.now(timezone.utc), attempts=1))
        ingest.COMMANDS.labels("tcp", "sent").inc(len(sent))
        return len(sent)

    async def pump_commands(self, external_ids: Iterable[str] | None = None) -> int:
        """Queued concentrator commands (e.g. from a webhook detector alarm, or queued while the
        concentrator was away) for meters connected here, or for the ones named."""
        targets = list(self.routes) if external_ids is None else list(external_ids)
        if not targets:
            return 0
        async with self.session_factory() as session:
            waiting = await self._queued(session, targets)
        return await self.send_commands(waiting)

    @staticmethod
    async def _queued(session: AsyncSession, external_ids: list[str]) -> list[tuple[str, str, object]]:
        rows = (await session.execute(
            select(Device.external_id, ValveCommand.frame_hex, ValveCommand.id)
            .join(Device, Device.id == ValveCommand.device_id)
            .where(ValveCommand.status == "queued", ValveCommand.channel == "tcp", Device.external_id.in_(external_ids))
            .order_by(ValveCommand.created_at)
        )).all()
        return [tuple(r) for r in rows]

    async def pump_forever(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.pump_commands()
            except Exception:  # the pump must outlive a database hiccup
                log.exception("meters.command_pump_failed")
