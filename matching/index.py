"""The live geo index in Redis: the only module issuing GEO commands.

Every key carries its city as a hash tag, so one city's keys share a Redis Cluster slot, and
every script names all the keys it touches in KEYS: the same code runs on one Redis and on a
cluster. Per city:
`matching:{city}:geo` GEO set of technicians who are online or busy;
`matching:{city}:live` hash technician id -> JSON {lon, lat, ts (epoch s of the fix), status,
active_jobs, max_jobs, persisted_at (when the position was last written to PostgreSQL)};
`matching:{city}:track:<id>` list of recent accepted fixes, newest first ("lon lat ts rx", rx
being when the server received it): the newest fix, then fixes kept at least TRACK_SPACING_S
apart in server time (a fix arriving sooner replaces the newest), so a burst of fixes cannot
push the older track out;
`matching:{city}:generation` written by a rebuild from PostgreSQL: a Redis that lost its data
lacks it, and whoever notices (a position fix, a matching round) rebuilds the city's index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import numpy as np
import orjson
from prometheus_client import Counter
from redis.asyncio import Redis

from kit.coalesce import Coalesced

POSITION_UPDATES = Counter("gasdispatch_position_updates_total", "Technician position fixes by outcome", ["outcome"])
# Bound once: looking a label up per fix is a measurable part of a fix's cost.
_COUNTED = {outcome: POSITION_UPDATES.labels(outcome) for outcome in ("accepted", "stale", "implausible_jump", "future")}

# Radii tried in turn: the search stops as soon as enough candidates are found, so its cost
# follows the local density of technicians, not the size of the city.
SEARCH_RADII_M = (250.0, 500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 50_000.0)
ON_MAP = ("online", "busy")
# A rebuild claims the city for this long, so a burst of fixes after a flush rebuilds once.
REBUILD_CLAIM_S = 30

# Many fixes of one city in one call. KEYS: geo, live, generation, then one track key per fix;
# ARGV: max m/s, persist period, track spacing, length and ttl, then one "id lon lat ts rx
# status" string per fix (status "-" keeps the stored one). Validates each fix against the
# previous one (ordering, speed), adds it to the track, and says whether PostgreSQL should get
# a copy (at a lower rate than Redis). The batch's states are read with one HMGET and written
# back with one HSET, GEOADD and ZREM, so a fix costs little more than its track entry. The
# state remembers when the track's two newest entries arrived (head_rx, prev_rx), so choosing
# between replacing the newest and pushing needs no read of the list. Returns whether the
# generation key exists, then outcome, persist pairs.
_UPDATE_POSITIONS = """
local max_mps, persist_every = tonumber(ARGV[1]), tonumber(ARGV[2])
local spacing, track_len, track_ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local future_skew = tonumber(ARGV[6])
local rad = math.pi / 180
local clock = redis.call('TIME')
local server_now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
local out = {redis.call('EXISTS', KEYS[3])}
local fixes, ids = {}, {}
for i = 7, #ARGV do
  local fix = {string.match(ARGV[i], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')}
  fixes[#fixes + 1] = fix
  ids[#ids + 1] = fix[1]
end
local raws = redis.call('HMGET', KEYS[2], unpack(ids))
local states, changed = {}, {}
for j, id in ipairs(ids) do
  if states[id] == nil then states[id] = raws[j] and cjson.decode(raws[j]) or {} end
end
for j, fix in ipairs(fixes) do
  local id, slon, slat, sts, srx, status = fix[1], fix[2], fix[3], fix[4], fix[5], fix[6]
  local lon, lat, ts = tonumber(slon), tonumber(slat), tonumber(sts)
  -- Received on Redis's clock, the one every process shares, unless the caller (a test) names it.
  local rx = srx == '-' and server_now or tonumber(srx)
  srx = string.format('%.6f', rx)
  local state = states[id]
  local outcome = 'accepted'
  if ts - rx > future_skew then
    outcome = 'future'
  elseif state.ts then
    local plon, plat, pts = tonumber(state.lon), tonumber(state.lat), tonumber(state.ts)
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
    state.lon, state.lat, state.ts = slon, slat, sts
    if status ~= '-' then state.status = status end
    local track = KEYS[j + 3]
    local entry = slon .. ' ' .. slat .. ' ' .. sts .. ' ' .. srx
    -- LPOP + LPUSH rather than LSET: an expired track is simply started again.
    if state.prev_rx and rx - tonumber(state.prev_rx) < spacing then
      redis.call('LPOP', track)
      redis.call('LPUSH', track, entry)
    else
      redis.call('LPUSH', track, entry)
      redis.call('LTRIM', track, 0, track_len - 1)
      state.prev_rx = state.head_rx
    end
    state.head_rx = srx
    redis.call('EXPIRE', track, track_ttl)
    if ts - tonumber(state.persisted_at or '0') >= persist_every then
      state.persisted_at = sts
      persist = 1
    end
    changed[id] = true
  end
  out[#out + 1] = outcome
  out[#out + 1] = persist
end
local hset, geoadd, zrem = {}, {}, {}
for id in pairs(changed) do
  local state = states[id]
  hset[#hset + 1] = id
  hset[#hset + 1] = cjson.encode(state)
  if state.status == 'online' or state.status == 'busy' then
    geoadd[#geoadd + 1] = state.lon
    geoadd[#geoadd + 1] = state.lat
    geoadd[#geoadd + 1] = id
  else
    zrem[#zrem + 1] = id
  end
end
if #hset > 0 then redis.call('HSET', KEYS[2], unpack(hset)) end
if #geoadd > 0 then redis.call('GEOADD', KEYS[1], unpack(geoadd)) end
if #zrem > 0 then redis.call('ZREM', KEYS[1], unpack(zrem)) end
return out
"""
# Status and load beside the position. KEYS: geo, live; ARGV: id, status, active_jobs,
# max_jobs, then optionally lon, lat, ts and "newer" (the position is kept only if newer than
# the stored fix). Offline or suspended technicians leave the GEO set.
_SET_AVAILABILITY = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local state = raw and cjson.decode(raw) or {}
state.status, state.active_jobs, state.max_jobs = ARGV[2], ARGV[3], ARGV[4]
if ARGV[7] and (ARGV[8] ~= 'newer' or not state.ts or tonumber(ARGV[7]) > tonumber(state.ts)) then
  state.lon, state.lat, state.ts = ARGV[5], ARGV[6], ARGV[7]
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(state))
if (state.status == 'online' or state.status == 'busy') and state.lon then
  redis.call('GEOADD', KEYS[1], state.lon, state.lat, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""

_REMOVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""


def geo_key(city: str) -> str:
    return f"matching:{{{city}}}:geo"


def live_key(city: str) -> str:
    return f"matching:{{{city}}}:live"


def track_key(city: str, technician_id: str) -> str:
    return f"matching:{{{city}}}:track:{technician_id}"


def generation_key(city: str) -> str:
    return f"matching:{{{city}}}:generation"


def rebuild_claim_key(city: str) -> str:
    return f"matching:{{{city}}}:rebuilding"


def reposition_key(city: str) -> str:
    return f"matching:{{{city}}}:reposition"


def technician_city_key(technician_id: str) -> str:
    """Not of any city's slot: read on its own, never inside a script."""
    return f"matching:technician-city:{technician_id}"


TECHNICIAN_CITY_TTL_S = 3600


TRACK_SPACING_S = 5.0
TRACK_LENGTH = 120  # at least ten minutes of track
TRACK_TTL_S = 3600


@dataclass(frozen=True)
class Fix:
    outcome: str  # accepted | stale | implausible_jump | future
    persist: bool = False
    index_lost: bool = False  # the city's index had lost its data (a flushed or restarted Redis)


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


# Expanding-radius KNN for many points in one call, with each found technician's state once.
# KEYS: geo, live.
_NEARBY_MANY = """
local k, maxr, nrad = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local radii = {}
for i = 1, nrad do radii[i] = math.min(tonumber(ARGV[3 + i]), maxr) end
local base = 3 + nrad
local per, seen, uniq = {}, {}, {}
for p = 0, (#ARGV - base) / 2 - 1 do
  local lon, lat = ARGV[base + 1 + 2 * p], ARGV[base + 2 + 2 * p]
  local res = {}
  for i = 1, nrad do
    res = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', lon, lat, 'BYRADIUS', radii[i], 'm', 'ASC', 'COUNT', k, 'WITHDIST')
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
local states = {}
for _, id in ipairs(uniq) do
  states[#states + 1] = id
  states[#states + 1] = redis.call('HGET', KEYS[2], id) or '{}'
end
return {per, states}
"""

# Points per script call: bounds how long one call holds Redis (a batch round is split).
_POINTS_PER_CALL = 100
# Fixes per script call: bounds how long one call holds Redis.
_FIXES_PER_CALL = 500


class GeoIndex:
    """`home_city` stands in where a caller names no city: the configured city of a one-city install."""

    def __init__(self, redis: Redis, *, max_speed_kmh: float = 150.0, persist_every_s: float = 30.0,
                 future_skew_s: float = 5.0, home_city: str = "demo") -> None:
        self.redis = redis
        self.max_mps = max_speed_kmh / 3.6
        self.persist_every_s = persist_every_s
        self.future_skew_s = future_skew_s
        self.home_city = home_city
        self._update = redis.register_script(_UPDATE_POSITIONS)
        self._set_availability = redis.register_script(_SET_AVAILABILITY)
        self._remove = redis.register_script(_REMOVE)
        self._nearby_many = redis.register_script(_NEARBY_MANY)
        self._fixes: dict[str, Coalesced[tuple[str, str], tuple[str, int, int]]] = {}  # per city

    async def update_position(
        self, *, technician_id: str, city: str | None = None, lon: float, lat: float, at: datetime,
        now: datetime | None = None, status: str | None = None,
    ) -> Fix:
        """Validate and store one fix. Coordinates are range-checked by the caller's schema;
        `status`, when the caller read it from PostgreSQL, puts the technician on the map or
        takes him off it with the fix.

        Concurrent callers share round trips: fixes arriving in the same loop iteration go
        to Redis in one script call per city.
        """
        city = city or self.home_city
        received = repr(now.timestamp()) if now is not None else "-"  # "-": Redis's own clock
        fix = f"{technician_id} {lon!r} {lat!r} {at.timestamp()!r} {received} {status or '-'}"
        coalesced = self._fixes.get(city)
        if coalesced is None:
            coalesced = self._fixes[city] = Coalesced(partial(self._store_fixes, city), max_batch=_FIXES_PER_CALL)
        outcome, persist, generation = await coalesced((technician_id, fix))
        _COUNTED[outcome].inc()
        return Fix(outcome, bool(persist), index_lost=not generation)

    async def _store_fixes(self, city: str, fixes: Sequence[tuple[str, str]]) -> list[tuple[str, int, int]]:
        keys = [geo_key(city), live_key(city), generation_key(city), *(track_key(city, t) for t, _ in fixes)]
        flat = await self._update(keys=keys, args=[self.max_mps, self.persist_every_s, TRACK_SPACING_S, TRACK_LENGTH,
                                                   TRACK_TTL_S, self.future_skew_s, *(f for _, f in fixes)])
        return [(flat[1 + 2 * i], flat[2 + 2 * i], flat[0]) for i in range(len(fixes))]

    async def set_availability(
        self, *, technician_id: str, city: str | None = None, status: str, active_jobs: int, max_jobs: int,
        position: tuple[float, float, datetime] | None = None, only_newer: bool = False,
    ) -> None:
        """Status and load beside the position (with `only_newer`, a position older than the
        stored one is dropped); offline or suspended technicians leave the GEO set."""
        city = city or self.home_city
        args: list[str | int] = [technician_id, status, active_jobs, max_jobs]
        if position is not None:
            lon, lat, at = position
            args += [repr(lon), repr(lat), repr(at.timestamp()), "newer" if only_newer else "any"]
        await self._set_availability(keys=[geo_key(city), live_key(city)], args=args)

    async def get(self, technician_id: str, city: str) -> LiveTechnician | None:
        raw = await self.redis.hget(live_key(city), technician_id)
        return _live(technician_id, orjson.loads(raw), distance_m=0.0) if raw else None

    async def track(self, technician_id: str, city: str) -> list[TrackPoint]:
        """The technician's recent accepted fixes, newest first."""
        out = []
        for entry in await self.redis.lrange(track_key(city, technician_id), 0, -1):
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
        """`nearby` for many points, in concurrent script calls of bounded size."""
        head = [k, max_radius_m, len(SEARCH_RADII_M), *SEARCH_RADII_M]
        keys = [geo_key(city), live_key(city)]
        replies = await asyncio.gather(*(
            self._nearby_many(keys=keys, args=head + [repr(v) for p in points[start:start + _POINTS_PER_CALL] for v in p])
            for start in range(0, len(points), _POINTS_PER_CALL)))
        out: list[list[LiveTechnician]] = []
        for per_point, flat_states in replies:
            states = {flat_states[i]: orjson.loads(flat_states[i + 1]) for i in range(0, len(flat_states), 2)}
            for flat in per_point:
                items = (_live(flat[j], states[flat[j]], float(flat[j + 1])) for j in range(0, len(flat), 2))
                out.append([item for item in items if item is not None])
        return out

    async def supply(self, city: str) -> Supply:
        """The city's technicians on the map (online or busy, with a position): one read of its
        state hash, whatever the number of technicians."""
        ids, lon, lat, states = [], [], [], []
        for technician_id, raw in (await self.redis.hgetall(live_key(city))).items():
            state = orjson.loads(raw)
            if state.get("status") in ON_MAP and "lon" in state and "ts" in state:
                ids.append(technician_id)
                lon.append(float(state["lon"]))
                lat.append(float(state["lat"]))
                states.append(state)
        return Supply(ids, np.array(lon, dtype=float), np.array(lat, dtype=float), states)

    async def snapshot(self, city: str, west: float, south: float, east: float, north: float) -> list[LiveTechnician]:
        """Every technician on the city's map inside the box (lon/lat bounds)."""
        supply = await self.supply(city)
        inside = (supply.lon >= west) & (supply.lon <= east) & (supply.lat >= south) & (supply.lat <= north)
        return [supply.technician(int(i)) for i in np.flatnonzero(inside)]

    async def remove(self, technician_id: str, city: str) -> None:
        await self._remove(keys=[geo_key(city), live_key(city), track_key(city, technician_id)], args=[technician_id])

    async def lost(self, city: str) -> bool:
        """The city's index lacks its generation: Redis lost its data since the last rebuild."""
        return not await self.redis.exists(generation_key(city))

    async def claim_rebuild(self, city: str) -> bool:
        """One rebuilder per city at a time (others go on with what is there)."""
        return bool(await self.redis.set(rebuild_claim_key(city), "1", nx=True, ex=REBUILD_CLAIM_S))

    async def rebuilt(self, city: str) -> None:
        await self.redis.set(generation_key(city), repr(time.time()))
        await self.redis.delete(rebuild_claim_key(city))


@dataclass(frozen=True)
class Supply:
    """A city's technicians on the map as columns, so a round searches them without building an
    object per technician; `technician(i)` builds the few it needs."""
    ids: list[str]
    lon: np.ndarray
    lat: np.ndarray
    states: list[dict]

    def __len__(self) -> int:
        return len(self.ids)

    def technician(self, i: int, distance_m: float = 0.0) -> LiveTechnician:
        live = _live(self.ids[i], self.states[i], distance_m)
        assert live is not None  # kept only with a position
        return live


def _live(technician_id: str, data: dict[str, str], distance_m: float) -> LiveTechnician | None:
    if "lon" not in data or "ts" not in data:
        return None
    return LiveTechnician(
        id=technician_id, lon=float(data["lon"]), lat=float(data["lat"]),
        seen_at=datetime.fromtimestamp(float(data["ts"]), timezone.utc), status=data.get("status", "offline"),
        active_jobs=int(data.get("active_jobs", 0)), max_jobs=int(data.get("max_jobs", 1)), distance_m=distance_m,
    )
