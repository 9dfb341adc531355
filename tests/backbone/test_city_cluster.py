"""The live geo index on a real 3-node Redis Cluster: every key of a city shares its slot and
every script declares its keys, so positions, KNN, presence and snapshots work as on one Redis."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from redis.asyncio import RedisCluster
from redis.cluster import key_slot

from matching.index import GeoIndex, generation_key, geo_key, live_key, track_key

HANGZHOU = (120.155, 30.274)
SHANGHAI = (121.474, 31.230)

@pytest.fixture
async def cluster(cluster_ports: list[int]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0], decode_responses=True)
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


@pytest.fixture
async def index(cluster: RedisCluster) -> GeoIndex:
    geo = GeoIndex(cluster, home_city="hangzhou")
    for city in ("hangzhou", "shanghai"):
        await geo.rebuilt(city)
    return geo


async def _on_duty(index: GeoIndex, city: str, technician_id: str, lon: float, lat: float, at: datetime) -> str:
    fix = await index.update_position(technician_id=technician_id, city=city, lon=lon, lat=lat, at=at, status="online")
    return fix.outcome


def test_every_key_of_a_city_shares_one_slot_and_cities_spread() -> None:
    slots = {key_slot(k.encode()) for k in (geo_key("hangzhou"), live_key("hangzhou"), generation_key("hangzhou"),
                                              track_key("hangzhou", "t-1"), track_key("hangzhou", "t-2"))}
    assert len(slots) == 1
    assert key_slot(geo_key("shanghai").encode()) not in slots


async def test_positions_are_validated_and_stored_per_city_on_the_cluster(index: GeoIndex) -> None:
    now = datetime.now(timezone.utc)
    assert await _on_duty(index, "hangzhou", "t-1", *HANGZHOU, now) == "accepted"
    stale = await index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0], lat=HANGZHOU[1],
                                        at=now - timedelta(seconds=5))
    assert stale.outcome == "stale"
    jump = await index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0] + 1.0, lat=HANGZHOU[1],
                                       at=now + timedelta(seconds=1))
    assert jump.outcome == "implausible_jump"
    live = await index.get("t-1", "hangzhou")
    assert (live.lon, live.lat, live.status) == (pytest.approx(HANGZHOU[0]), pytest.approx(HANGZHOU[1]), "online")
    assert [p.lon for p in await index.track("t-1", "hangzhou")] == [pytest.approx(HANGZHOU[0])]
    assert await index.get("t-1", "shanghai") is None


async def test_concurrent_fixes_of_two_cities_go_to_their_own_slots(index: GeoIndex) -> None:
    now = datetime.now(timezone.utc)
    outcomes = await asyncio.gather(*(
        _on_duty(index, city, f"{city}-{i}", centre[0] + 0.001 * i, centre[1], now)
        for city, centre in (("hangzhou", HANGZHOU), ("shanghai", SHANGHAI)) for i in range(20)))
    assert outcomes == ["accepted"] * 40
    assert len(await index.nearby("shanghai", *SHANGHAI, k=50, max_radius_m=50_000)) == 20


async def test_nearest_technicians_of_the_city_come_first(index: GeoIndex) -> None:
    now = datetime.now(timezone.utc)
    for i, east in enumerate((0.02, 0.005, 0.01)):
        await _on_duty(index, "hangzhou", f"h-{i}", HANGZHOU[0] + east, HANGZHOU[1], now)
    await _on_duty(index, "shanghai", "s-0", *SHANGHAI, now)
    found = await index.nearby("hangzhou", *HANGZHOU, k=2, max_radius_m=10_000)
    assert [t.id for t in found] == ["h-1", "h-2"]
    assert found[0].distance_m < found[1].distance_m
    many = await index.nearby_many("hangzhou", [HANGZHOU, SHANGHAI], k=5, max_radius_m=10_000)
    assert [len(group) for group in many] == [3, 0]


async def test_going_offline_and_back_moves_a_technician_off_and_onto_the_map(index: GeoIndex) -> None:
    now = datetime.now(timezone.utc)
    await _on_duty(index, "hangzhou", "t-1", *HANGZHOU, now)
    await index.set_availability(technician_id="t-1", city="hangzhou", status="offline", active_jobs=0, max_jobs=1)
    assert await index.nearby("hangzhou", *HANGZHOU, k=5, max_radius_m=5_000) == []
    assert (await index.get("t-1", "hangzhou")).status == "offline"
    await index.set_availability(technician_id="t-1", city="hangzhou", status="busy", active_jobs=1, max_jobs=1)
    back = await index.nearby("hangzhou", *HANGZHOU, k=5, max_radius_m=5_000)
    assert [(t.id, t.status, t.active_jobs) for t in back] == [("t-1", "busy", 1)]
    await index.remove("t-1", "hangzhou")
    assert await index.get("t-1", "hangzhou") is None and await index.track("t-1", "hangzhou") == []


async def test_a_snapshot_holds_the_city_technicians_inside_the_box(index: GeoIndex) -> None:
    now = datetime.now(timezone.utc)
    await _on_duty(index, "hangzhou", "inside", HANGZHOU[0] + 0.01, HANGZHOU[1] + 0.01, now)
    await _on_duty(index, "hangzhou", "outside", HANGZHOU[0] + 0.2, HANGZHOU[1], now)
    box = (HANGZHOU[0] - 0.05, HANGZHOU[1] - 0.05, HANGZHOU[0] + 0.05, HANGZHOU[1] + 0.05)
    assert [t.id for t in await index.snapshot("hangzhou", *box)] == ["inside"]
    assert await index.snapshot("shanghai", *box) == []


async def test_a_flushed_cluster_is_noticed_by_the_next_fix(index: GeoIndex, cluster: RedisCluster) -> None:
    now = datetime.now(timezone.utc)
    fine = await index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0], lat=HANGZHOU[1], at=now)
    assert not fine.index_lost and not await index.lost("hangzhou")
    await cluster.flushall(target_nodes=RedisCluster.PRIMARIES)
    lost = await index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0], lat=HANGZHOU[1],
                                       at=now + timedelta(seconds=1))
    assert lost.index_lost and await index.lost("hangzhou")
    assert await index.claim_rebuild("hangzhou") and not await index.claim_rebuild("hangzhou")
    await index.rebuilt("hangzhou")
    assert not await index.lost("hangzhou")


async def test_a_track_keeps_fixes_spaced_and_fixes_of_one_batch_apply_in_order(index: GeoIndex) -> None:
    start = datetime.now(timezone.utc)
    # Received 0, 1, 2, 6 and 7 s in: the third replaces the second (under 5 s after the first
    # kept one), the others are kept.
    fixes = [index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0] + 0.0001 * s, lat=HANGZHOU[1],
                                   at=start + timedelta(seconds=s), now=start + timedelta(seconds=s), status="online")
             for s in (0, 1, 2, 6, 7)]
    assert [f.outcome for f in await asyncio.gather(*fixes)] == ["accepted"] * 5  # one batch, in order
    track = await index.track("t-1", "hangzhou")
    assert [round((p.received_at - start).total_seconds()) for p in track] == [7, 6, 2, 0]
    assert (await index.get("t-1", "hangzhou")).lon == pytest.approx(HANGZHOU[0] + 0.0007)
    await index.redis.delete(track_key("hangzhou", "t-1"))  # expired after an hour's silence
    await index.update_position(technician_id="t-1", city="hangzhou", lon=HANGZHOU[0], lat=HANGZHOU[1],
                                at=start + timedelta(seconds=8), now=start + timedelta(seconds=8))
    assert len(await index.track("t-1", "hangzhou")) == 1
