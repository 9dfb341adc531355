"""Issue #13, item 7: `/v1/technicians/nearby` cannot be used to follow a technician."""

from datetime import datetime, timedelta, timezone

from httpx import AsyncClient
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.geo import lonlat, point
from dispatch.models import Address
from matching import nearby
from matching import service as engine
from matching.scoring import haversine_m
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)
LON_PER_M = 1 / 96_200  # at the test latitude
LAT_PER_M = 1 / 111_320


async def online_at(session: AsyncSession, redis, lon: float, lat: float):  # noqa: ANN001, ANN201
    ctx = await make_technician(session)
    index = engine.geo_index(redis)
    await engine.go_online(session, index, ctx.technician)
    await engine.record_position(session, index, ctx.technician, lon=lon, lat=lat, at=datetime.now(timezone.utc))
    return ctx


async def test_nearby_is_asked_around_the_callers_own_address_only(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    await online_at(session, redis, CENTER[0] + 200 * LON_PER_M, CENTER[1])
    me, stranger = await make_customer(session), await make_customer(session)
    anywhere = await client.get("/v1/technicians/nearby", headers=me.headers, params={"lon": CENTER[0], "lat": CENTER[1]})
    assert anywhere.status_code == 422, anywhere.text
    theirs = await client.get("/v1/technicians/nearby", headers=me.headers, params={"address_id": str(stranger.address.id)})
    assert theirs.status_code == 404, theirs.text
    mine = await client.get("/v1/technicians/nearby", headers=me.headers, params={"address_id": str(me.address.id)})
    assert mine.status_code == 200 and len(mine.json()["data"]) == 1


async def test_a_technician_on_a_job_is_not_listed(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    free = await online_at(session, redis, CENTER[0] + 300 * LON_PER_M, CENTER[1])
    busy = await online_at(session, redis, CENTER[0] - 300 * LON_PER_M, CENTER[1])
    busy.technician.status = "busy"
    session.add(busy.technician)
    await session.flush()
    await engine.geo_index(redis).set_availability(technician_id=str(busy.technician.id), city="demo", status="busy",
                                                   active_jobs=1, max_jobs=1)
    c = await make_customer(session, *CENTER)
    listed = (await client.get("/v1/technicians/nearby", headers=c.headers, params={"address_id": str(c.address.id)})).json()
    assert [t["id"] for t in listed["data"]] == [str(free.technician.id)]
    assert all(t["status"] == "online" for t in listed["data"])


async def test_queries_from_many_addresses_see_one_coarse_point_and_cannot_triangulate(
    client: AsyncClient, session: AsyncSession, redis,  # noqa: ANN001
) -> None:
    true_lon, true_lat = CENTER[0] + 120 * LON_PER_M, CENTER[1] + 80 * LAT_PER_M
    tech = await online_at(session, redis, true_lon, true_lat)
    c = await make_customer(session, *CENTER)
    # Twelve addresses on a ring around him: what an attacker would add to trilaterate.
    addresses = []
    for i in range(12):
        lon = true_lon + 900 * LON_PER_M * (1 if i % 4 < 2 else -1) * (i % 3 + 1) / 3
        lat = true_lat + 900 * LAT_PER_M * (1 if i % 2 else -1) * ((i + 1) % 3 + 1) / 3
        address = Address(customer_id=c.customer.id, label=f"a{i}", line="x", location=point(lon, lat))
        session.add(address)
        addresses.append(address)
    await session.flush()
    shown = set()
    for address in addresses:
        answer = await client.get("/v1/technicians/nearby", headers=c.headers, params={"address_id": str(address.id)})
        assert answer.status_code == 200, answer.text
        (item,) = [t for t in answer.json()["data"] if t["id"] == str(tech.technician.id)]
        lon, lat = item["position"]["coordinates"]
        shown.add((lon, lat))
        # The distance is the shown point's, so it says nothing the point does not.
        address_lon, address_lat = lonlat(address.location)
        assert item["distance_m"] == round(haversine_m(address_lon, address_lat, lon, lat) / 100) * 100
    assert len(shown) == 1, shown
    ((lon, lat),) = shown
    assert 0 < haversine_m(true_lon, true_lat, lon, lat) <= 2 * nearby.CELL_M * 2**0.5


async def test_nearby_queries_are_rate_limited_per_customer(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    c = await make_customer(session, *CENTER)
    params = {"address_id": str(c.address.id)}
    answers = [await client.get("/v1/technicians/nearby", headers=c.headers, params=params)
               for _ in range(nearby.QUERIES_PER_MINUTE + 1)]
    assert [a.status_code for a in answers[:-1]] == [200] * nearby.QUERIES_PER_MINUTE
    assert answers[-1].status_code == 429 and answers[-1].headers["content-type"] == "application/problem+json"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    other = await make_customer(session, *CENTER)
    assert (await client.get("/v1/technicians/nearby", headers=other.headers,
                             params={"address_id": str(other.address.id)})).status_code == 200


def test_the_coarse_point_holds_for_a_window_and_moves_with_the_next() -> None:
    key = b"k" * 32
    at = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    lon, lat = CENTER
    same_window = {nearby.coarse_position("t1", lon + dx * LON_PER_M, lat, at + timedelta(seconds=s), key)
                   for dx, s in [(0, 0), (3, 60), (6, 120)]}
    assert len(same_window) <= 2  # only a cell edge between them can move the point, and then by a whole cell
    first = nearby.coarse_position("t1", lon, lat, at, key)
    assert first == nearby.coarse_position("t1", lon, lat, at + timedelta(seconds=nearby.WINDOW_S - 1), key)
    assert first != nearby.coarse_position("t1", lon, lat, at + timedelta(seconds=nearby.WINDOW_S), key)
    assert first != nearby.coarse_position("t2", lon, lat, at, key)  # one grid per technician
    assert first != nearby.coarse_position("t1", lon, lat, at, b"x" * 32)  # keyed


def test_the_coarse_point_stays_within_two_cells_of_the_truth() -> None:
    at = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    for i in range(200):
        lon, lat = CENTER[0] + i * 37 * LON_PER_M, CENTER[1] - i * 23 * LAT_PER_M
        shown = nearby.coarse_position(f"t{i}", lon, lat, at + timedelta(minutes=7 * i), b"k" * 32)
        assert haversine_m(lon, lat, *shown) <= 2 * nearby.CELL_M * 2**0.5
