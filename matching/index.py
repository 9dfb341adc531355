"""The live geo index in Redis: the only module issuing GEO commands.

Keys (per city): `matching:geo:{city}` GEO set of technicians who are online or busy;
`matching:tech:{id}` hash with lon, lat, ts (epoch s of the fix), status, active_jobs,
max_jobs, city, persisted_at (when the position was last written to PostgreSQL);
`matching:track:{id}` list of recent accepted fixes, newest first ("lon lat ts rx", rx being
when the server received it): the newest fix, then fixes kept at least TRACK_SPACING_S apart
in server time (a fix arriving sooner replaces the newest), so a burst of fixes cannot push
the older track out.
"""

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client import Counter
from redis.asyncio import Redis

POSITION_UPDATES = Counter("gasdispatch_position_updates_total", "Technician position fixes by outcome", ["outcome"])

EARTH_RADIUS_M = 6_371_008.8
# Radii tried in turn: the search stops as soon as enough candidates are found, so its cost
# follows the local density of technicians, not the size of the city.
SEARCH_RADII_M = (250.0, 500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 50_000.0)

# Many fixes in one call (ARGV: max m/s, persist period, city, track spacing, length and ttl,
# then one "id lon lat ts rx" string per fix): validates each against the previous fix
# (ordering, speed), stores it and adds it to the track, and says whether PostgreSQL should
# get a copy (at a lower rate than Redis). Returns outcome, persist pairs. Keys derive from the
# ids, so this runs on one Redis (Cluster would need hash tags).
_UPDATE_POSITIONS = """
local max_mps, persist_every, city = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local spacing, track_len, track_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local geo = 'matching:geo:' .. city
local rad = math.pi / 180
local out = {}
for i = 7, #ARGV do
  local id, slon, slat, sts, srx = string.match(ARGV[i], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
  local lon, lat, ts, rx = tonumber(slon), tonumber(slat), tonumber(sts), tonumber(srx)
  local key = 'matching:tech:' .. id
  local prev = redis.call('HMGET', key, 'lon', 'lat', 'ts', 'persisted_at', 'status')
  local outcome = 'accepted'
  if prev[3] then
    local plon, plat, pts = tonumber(prev[1]), tonumber(prev[2]), tonumber(prev[3])
    if ts <= pts then
      outcome = 'stale'
    else
      local dlat, dlon = (lat - plat) * rad, (lon - plon) * rad
      local a = math.sin(dlat / 2) ^ 2 + math.cos(plat * rad) * math.cos(lat * rad) * math.sin(dlon / 2) ^ 2
      local d = 2 * 6371008.8 * math.asin(math.min(1, math.sqrt(a)))
      -- GPS noise of a few tens of metres is not travel: only the excess counts as speed.
      if (d - 30) / (ts - pts) > max_mps then outcome = 'implausible_jump' end
    end
  end
  local persist = 0
  if outcome == 'accepted' then
    redis.call('HSET', key, 'lon', slon, 'lat', slat, 'ts', sts, 'city', city)
    local track = 'matching:track:' .. id
    local entry = slon .. ' ' .. slat .. ' ' .. sts .. ' ' .. srx
    local kept = redis.call('LINDEX', track, 1)
    if kept and rx - tonumber(string.match(kept, '(%S+)$')) < spacing then
      redis.call('LSET', track, 0, entry)
    else
      redis.call('LPUSH', track, entry)
      redis.call('LTRIM', track, 0, track_len - 1)
    end
    redis.call('EXPIRE', track, track_ttl)
    if prev[5] == 'online' or prev[5] == 'busy' then redis.call('GEOADD', geo, lon, lat, id) end
    if ts - tonumber(prev[4] or '0') >= persist_every then
      redis.call('HSET', key, 'persisted_at', sts)
      persist = 1
    end
  end
  out[#out + 1] = outcome
  out[#out + 1] = persist
end
return out
"""


def geo_key(city: str) -> str:
    return f"matching:geo:{city}"


def tech_key(technician_id: str) -> str:
    return f"matching:tech:{technician_id}"


def track_key(technician_id: str) -> str:
    return f"matching:track:{technician_id}"


TRACK_SPACING_S = 5.0
TRACK_LENGTH = 120  # at least ten minutes of track
TRACK_TTL_S = 3600


@dataclass(frozen=True)
class Fix:
    outcome: str  # accepted | stale | implausible_jump | future
    persist: bool = False


@dataclass(frozen=True)
class TrackPoint:
    lon: float
    lat: float
    at: datetime  # the fix's own time, as the phone stated it
    received_at: datetime  # the server's clock when the fix arrived


@dataclass(frozen=True)
class LiveTechnician:
    id: str
    lon: float
    lat: float
    seen_at: datetime
    status: str
    active_jobs: int
    max_jobs: int
    distance_m: float


# Expanding-radius KNN for many points in one call, with each found technician's hash once.
# Keys of the hashes are derived from GEO members, so this runs on one Redis (or, with
# Cluster, needs the city as a hash tag in every key).
_NEARBY_MANY = """
local geo = KEYS[1]
local k, maxr, nrad = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local radii = {}
for i = 1, nrad do radii[i] = math.min(tonumber(ARGV[3 + i]), maxr) end
local base = 3 + nrad
local per, seen, uniq = {}, {}, {}
for p = 0, (#ARGV - base) / 2 - 1 do
  local lon, lat = ARGV[base + 1 + 2 * p], ARGV[base + 2 + 2 * p]
  local res = {}
  for i = 1, nrad do
    res = redis.call('GEOSEARCH', geo, 'FROMLONLAT', lon, lat, 'BYRADIUS', radii[i], 'm', 'ASC', 'COUNT', k, 'WITHDIST')
    if #res >= k or radii[i] >= maxr then break end
  end
  local flat = {}
  for _, item in ipairs(res) do
    flat[#flat + 1] = item[1]
    flat[#flat + 1] = item[2]
    if not seen[item[1]] then seen[item[1]] = true; uniq[#uniq + 1] = item[1] end
  end
  per[#per + 1] = flat
end
local hashes = {}
for _, id in ipairs(uniq) do
  local h = redis.call('HMGET', 'matching:tech:' .. id, 'lon', 'lat', 'ts', 'status', 'active_jobs', 'max_jobs')
  hashes[#hashes + 1] = id
  for j = 1, 6 do hashes[#hashes + 1] = h[j] end
end
return {per, hashes}
"""
_HASH_FIELDS = ("lon", "lat", "ts", "status", "active_jobs", "max_jobs")

# Every technician of the GEO set inside a box, each packed into one string: a batch round
# takes its supply snapshot in one call and searches it locally.
_SNAPSHOT = """
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2], 'BYBOX', ARGV[3], ARGV[4], 'm')
local out = {}
for i, id in ipairs(found) do
  local h = redis.call('HMGET', 'matching:tech:' .. id, 'lon', 'lat', 'ts', 'status', 'active_jobs', 'max_jobs')
  if h[1] and h[3] then
    out[#out + 1] = id .. '|' .. h[1] .. '|' .. h[2] .. '|' .. h[3] .. '|' .. (h[4] or 'offline') .. '|' .. (h[5] or '0') .. '|' .. (h[6] or '1')
  end
end
return out
"""
# Points per script call: bounds how long one call holds Redis (a batch round is split).
_POINTS_PER_CALL = 100
# Fixes per script call: bounds how long one call holds Redis.
_FIXES_PER_CALL = 500


class GeoIndex:
    def __init__(self, redis: Redis, *, max_speed_kmh: float = 150.0, persist_every_s: float = 30.0,
                 future_skew_s: float = 5.0) -> None:
        self.redis = redis
        self.max_mps = max_speed_kmh / 3.6
        self.persist_every_s = persist_every_s
        self.future_skew_s = future_skew_s
        self._update = redis.register_script(_UPDATE_POSITIONS)
        self._nearby_many = redis.register_script(_NEARBY_MANY)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._pending: list[tuple[str, str, asyncio.Future]] = []
        self._flush_scheduled = False

    async def update_position(
        self, *, technician_id: str, city: str, lon: float, lat: float, at: datetime, now: datetime | None = None,
    ) -> Fix:
        """Validate and store one fix. Coordinates are range-checked by the caller's schema.

        Concurrent callers share round trips: fixes arriving in the same loop iteration go
        to Redis in one pipeline.
        """
        now = now or datetime.now(timezone.utc)
        if (at - now).total_seconds() > self.future_skew_s:
            POSITION_UPDATES.labels("future").inc()
            return Fix("future")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((city, f"{technician_id} {lon!r} {lat!r} {at.timestamp()!r} {now.timestamp()!r}", future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))
        outcome, persist = await future
        POSITION_UPDATES.labels(outcome).inc()
        return Fix(outcome, bool(persist))

    async def _flush(self) -> None:
        batch, self._pending, self._flush_scheduled = self._pending, [], False
        by_city: dict[str, list[tuple[str, asyncio.Future]]] = {}
        for city, fix, future in batch:
            by_city.setdefault(city, []).append((fix, future))
        for city, items in by_city.items():
            for start in range(0, len(items), _FIXES_PER_CALL):
                chunk = items[start:start + _FIXES_PER_CALL]
                try:
                    flat = await self._update(args=[self.max_mps, self.persist_every_s, city, TRACK_SPACING_S, TRACK_LENGTH,
                                                    TRACK_TTL_S, *(f for f, _ in chunk)])
                except Exception as exc:  # the callers see the failure; the index stays usable
                    for _, future in chunk:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for i, (_, future) in enumerate(chunk):
                    if not future.done():
                        future.set_result((flat[2 * i], flat[2 * i + 1]))

    async def set_availability(
        self, *, technician_id: str, city: str, status: str, active_jobs: int, max_jobs: int,
        position: tuple[float, float, datetime] | None = None,
    ) -> None:
        """Status and load beside the position; offline or suspended technicians leave the GEO set."""
        mapping: dict[str, str] = {"status": status, "active_jobs": str(active_jobs), "max_jobs": str(max_jobs), "city": city}
        if position is not None:
            lon, lat, at = position
            mapping.update({"lon": repr(lon), "lat": repr(lat), "ts": repr(at.timestamp())})
        stored = position[:2] if position else await self.redis.hmget(tech_key(technician_id), "lon", "lat")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(tech_key(technician_id), mapping=mapping)
            if status in ("online", "busy") and stored[0] is not None:
                pipe.geoadd(geo_key(city), (float(stored[0]), float(stored[1]), technician_id))
            elif status not in ("online", "busy"):
                pipe.zrem(geo_key(city), technician_id)
            await pipe.execute()

    async def get(self, technician_id: str) -> LiveTechnician | None:
        data = await self.redis.hgetall(tech_key(technician_id))
        return _live(technician_id, data, distance_m=0.0)

    async def track(self, technician_id: str) -> list[TrackPoint]:
        """The technician's recent accepted fixes, newest first."""
        out = []
        for entry in await self.redis.lrange(track_key(technician_id), 0, -1):
            lon, lat, ts, rx = (float(v) for v in entry.split())
            out.append(TrackPoint(lon, lat, datetime.fromtimestamp(ts, timezone.utc), datetime.fromtimestamp(rx, timezone.utc)))
        return out

    async def nearby(self, city: str, lon: float, lat: float, *, k: int, max_radius_m: float) -> list[LiveTechnician]:
        """Up to k technicians nearest to (lon, lat), widening the radius only while too few
        are found: one round trip."""
        return (await self.nearby_many(city, [(lon, lat)], k=k, max_radius_m=max_radius_m))[0]

    async def nearby_many(
        self, city: str, points: list[tuple[float, float]], *, k: int, max_radius_m: float,
    ) -> list[list[LiveTechnician]]:
        """`nearby` for many points, in pipelined script calls of bounded size."""
        head = [k, max_radius_m, len(SEARCH_RADII_M), *SEARCH_RADII_M]
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(points), _POINTS_PER_CALL):
                chunk = points[start:start + _POINTS_PER_CALL]
                await self._nearby_many(keys=[geo_key(city)], args=head + [repr(v) for p in chunk for v in p], client=pipe)
            replies = await pipe.execute()
        out: list[list[LiveTechnician]] = []
        for per_point, flat_hashes in replies:
            hashes = {}
            for i in range(0, len(flat_hashes), 7):
                values = flat_hashes[i + 1:i + 7]
                hashes[flat_hashes[i]] = {f: v for f, v in zip(_HASH_FIELDS, values) if v is not None}
            for flat in per_point:
                items = (_live(flat[j], hashes[flat[j]], float(flat[j + 1])) for j in range(0, len(flat), 2))
                out.append([item for item in items if item is not None])
        return out

    async def snapshot(self, city: str, west: float, south: float, east: float, north: float) -> list[LiveTechnician]:
        """Every technician of the city's GEO set inside the box (lon/lat bounds)."""
        lon, lat = (west + east) / 2, (south + north) / 2
        # Measured at the latitude nearest the equator, where the box is widest, plus 1 %.
        equatorward = 0.0 if south <= 0 <= north else min(abs(south), abs(north))
        width = 1.01 * EARTH_RADIUS_M * math.radians(east - west) * math.cos(math.radians(equatorward))
        height = 1.01 * EARTH_RADIUS_M * math.radians(north - south)
        packed = await self._snapshot(keys=[geo_key(city)], args=[repr(lon), repr(lat), max(width, 1.0), max(height, 1.0)])
        out = []
        for item in packed:
            tid, tlon, tlat, ts, status, active, most = item.split("|")
            out.append(LiveTechnician(tid, float(tlon), float(tlat), datetime.fromtimestamp(float(ts), timezone.utc),
                                      status, int(active), int(most), 0.0))
        return out

    async def remove(self, technician_id: str, city: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(geo_key(city), technician_id)
            pipe.delete(tech_key(technician_id))
            await pipe.execute()


def _live(technician_id: str, data: dict[str, str], distance_m: float) -> LiveTechnician | None:
    if not data or "lon" not in data or "ts" not in data:
        return None
    return LiveTechnician(
        id=technician_id, lon=float(data["lon"]), lat=float(data["lat"]),
        seen_at=datetime.fromtimestamp(float(data["ts"]), timezone.utc), status=data.get("status", "offline"),
        active_jobs=int(data.get("active_jobs", 0)), max_jobs=int(data.get("max_jobs", 1)), distance_m=distance_m,
    )
