"""Arrival times: the distance model, trips recorded from departure to check-in, the learned
model (used only once trained on enough trips), and the `eta` field of the order."""

import json
import random
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.field import visits
from dispatch.field.identity import waive
from dispatch.service import Actor
from kit.events import drain
from kit.fanout import active_orders_key, order_channel
from matching import eta
from matching import service as engine
from matching.city_traffic import generate_trips
from matching.models import EtaModel, TripTime
from matching.scoring import eta_s
from tests.field.support import accepted_job, place

FEATURES = eta.TripFeatures(distance_m=4000, local_hour=10, weekday=2, district="0:0", kind="repair")


def test_distance_model_is_the_matching_estimate_with_a_later_leaning_range() -> None:
    config = eta.distance_config()
    low, high, model = eta.arrival_range(FEATURES, None, config)
    point = eta_s(4000, config)  # 4 km x 1.3 at 25 km/h: about 12.5 minutes
    assert model == "distance"
    assert (low, high) == (point * eta.DISTANCE_SPREAD[0], point * eta.DISTANCE_SPREAD[1])
    assert eta.baseline_s(4000, config) == point


def test_learned_model_beats_the_distance_model_on_city_traffic_it_cannot_see() -> None:
    # Rush hours, slow central districts and time from the kerb to the door: structure
    # the straight-line model has no feature for.
    trips = eta.usable(generate_trips(days=4, orders_per_day=300, seed=3))
    random.Random(0).shuffle(trips)
    cut = int(len(trips) * 0.8)
    figures = eta.evaluate(eta.TravelModel(eta.distance_config()).fit(trips[:cut]), trips[cut:])
    assert figures.learned_mae_s < 0.8 * figures.baseline_mae_s
    assert figures.learned_p90_s < figures.baseline_p90_s
    assert 0.6 < figures.range_coverage < 0.95  # a 10th-90th percentile range holds most trips


def test_stored_model_survives_a_round_trip_and_predicts_an_ordered_range() -> None:
    trips = eta.usable(generate_trips(days=2, orders_per_day=200, seed=5))
    model = eta.TravelModel.loads(eta.TravelModel(eta.distance_config()).fit(trips).dumps())
    low, middle, high = model.predict([FEATURES, eta.TripFeatures(4000, 3, 6, "never-seen", "new-kind")])[0]
    assert 0 < low <= middle <= high


async def _drive(session: AsyncSession, redis, client: AsyncClient | None = None):  # noqa: ANN001, ANN202
    """A job accepted 3 km away, departed a minute later, checked in ten minutes after that;
    yields at each step the order as its customer reads it."""
    t0 = datetime.now(UTC) - timedelta(minutes=15)
    job = await accepted_job(session, redis, t0, start_m=3000)
    tech_id = job.technician.technician.id
    await drain(session)
    yield job, "accepted"
    await visits.depart(session, redis, job.order.id, tech_id, t0 + timedelta(minutes=1))
    await drain(session)
    yield job, "en_route"
    await waive(session, job.order, Actor("customer", str(job.customer.account.id)), None, t0)
    await place(session, redis, job, 20, t0 + timedelta(minutes=11))
    await visits.arrive(session, redis, job.order.id, tech_id, t0 + timedelta(minutes=11))
    await drain(session)
    yield job, "arrived"


async def test_order_carries_eta_from_acceptance_until_arrival(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    async for job, status in _drive(session, redis):
        read = (await client.get(f"/v1/orders/{job.order.id}", headers=job.customer.headers)).json()
        assert read["status"] == status
        mine = (await client.get("/v1/orders", headers=job.technician.headers)).json()["data"]
        if status == "arrived":
            assert read["eta"] is None and mine[0]["eta"] is None
            continue
        arrival = read["eta"]
        assert arrival["model"] == "distance"  # nothing trained in this database
        earliest, latest = datetime.fromisoformat(arrival["earliest"]), datetime.fromisoformat(arrival["latest"])
        now = datetime.now(UTC)
        # 3 km away: the distance model says about 9.4 min, spread to 0.8x-1.5x.
        assert now + timedelta(minutes=6) < earliest < latest < now + timedelta(minutes=16)
        assert mine[0]["eta"]["model"] == "distance"


async def test_trip_is_recorded_from_the_departure_position_to_the_check_in(session: AsyncSession, redis) -> None:  # noqa: ANN001
    async for job, status in _drive(session, redis):
        trip = await session.get(TripTime, job.order.id, populate_existing=True)
        if status == "accepted":
            assert trip is None
        elif status == "en_route":
            assert trip.duration_s is None and abs(trip.distance_m - 3000) < 20  # the support places him 3 km east, roughly
            assert trip.kind == "repair" and trip.district == eta.district_of(trip.end_lon, trip.end_lat)
            assert trip.local_hour == trip.departed_at.astimezone(await eta.city_zone(session, "demo")).hour
        else:
            assert trip.duration_s == 600.0


async def test_too_few_trips_keep_the_distance_model(session: AsyncSession, redis) -> None:  # noqa: ANN001
    async for _ in _drive(session, redis):
        pass
    training = await eta.train(session, min_trips=10)
    assert (training.trips, training.model_id, training.figures) == (1, None, None)
    assert (await session.exec(select(EtaModel))).first() is None
    assert await eta.current_model(session) is None


async def test_a_stored_model_answers_and_is_named_learned(client: AsyncClient, session: AsyncSession, redis) -> None:  # noqa: ANN001
    trips = eta.usable(generate_trips(days=2, orders_per_day=200, seed=7))
    model = eta.TravelModel(eta.distance_config()).fit(trips)
    session.add(EtaModel(trips=len(trips), learned_mae_s=200, learned_p90_s=400, baseline_mae_s=300,
                         baseline_p90_s=600, blob=model.dumps()))
    await session.flush()
    async for job, status in _drive(session, redis):
        read = (await client.get(f"/v1/orders/{job.order.id}", headers=job.customer.headers)).json()
        assert (read["eta"] or {}).get("model") == ("learned" if status != "arrived" else None)
        break


async def test_position_fixes_push_the_eta_only_when_it_moves_by_more_than_a_minute(session: AsyncSession, redis) -> None:  # noqa: ANN001
    index = engine.geo_index(redis)
    async for job, _ in _drive(session, redis):
        order_id, tech_id = str(job.order.id), job.technician.technician.id
        await redis.sadd(active_orders_key(tech_id), order_id)  # done after the commit in the app
        listener = redis.pubsub()
        await listener.subscribe(order_channel(order_id))
        assert await eta.refresh_after_fix(redis, index, tech_id, session) == 1
        assert await eta.refresh_after_fix(redis, index, tech_id, session) == 0  # throttled
        await redis.delete(eta.refresh_key(order_id))
        assert await eta.refresh_after_fix(redis, index, tech_id, session) == 0  # the same range
        await place(session, redis, job, 1000, datetime.now(UTC))
        await redis.delete(eta.refresh_key(order_id))
        assert await eta.refresh_after_fix(redis, index, tech_id, session) == 1  # 2 km closer
        pushed = []
        for _ in range(10):  # the subscription's own confirmation reads as None
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                pushed.append(json.loads(message["data"]))
        await listener.aclose()
        assert [(m["type"], m["eta"]["model"]) for m in pushed] == [("eta", "distance")] * 2
        assert pushed[1]["eta"]["latest"] < pushed[0]["eta"]["latest"]
        break


async def _recorded(session: AsyncSession, slowdown: float) -> None:
    """Twelve trips of 1-12 km, each taking `slowdown` times the distance model's estimate."""
    from dispatch.service import create_order
    from tests.factories import make_customer, make_technician

    customer = await make_customer(session)
    technician = await make_technician(session)
    config = eta.distance_config()
    departed = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    for i in range(12):
        order = await create_order(session, customer_id=customer.customer.id, address_id=customer.address.id,
                                   kind="repair", actor=Actor.system("test"), source="campaign")
        distance, at = 1000.0 * (i + 1), departed + timedelta(hours=i)
        duration = slowdown * eta_s(distance, config)
        session.add(TripTime(order_id=order.id, technician_id=technician.technician.id, kind="repair", district="0:0",
                             start_lon=0, start_lat=0, end_lon=0, end_lat=0, distance_m=distance, local_hour=at.hour,
                             weekday=at.weekday(), departed_at=at, arrived_at=at + timedelta(seconds=duration),
                             duration_s=duration))
    await session.flush()


async def test_enough_trips_train_and_store_the_learned_model(session: AsyncSession) -> None:
    await _recorded(session, slowdown=2.0)  # the streets are twice as slow as the straight line says
    training = await eta.train(session, min_trips=10)
    assert training.trips == 12 and training.model_id is not None and training.figures.trips == 3
    assert training.model == "learned"
    assert training.figures.learned_mae_s < training.figures.baseline_mae_s
    assert isinstance(await eta.current_model(session), eta.TravelModel)


async def test_a_model_no_better_than_the_distance_model_is_stored_but_not_used(session: AsyncSession) -> None:
    good = EtaModel(trips=500, learned_mae_s=200, learned_p90_s=400, baseline_mae_s=300, baseline_p90_s=600,
                    blob=eta.TravelModel(eta.distance_config()).fit(
                        eta.usable(generate_trips(days=1, orders_per_day=100, seed=13))).dumps())
    session.add(good)
    await session.flush()
    assert isinstance(await eta.current_model(session), eta.TravelModel)
    await _recorded(session, slowdown=1.0)  # trips the distance model gets exactly right
    training = await eta.train(session, min_trips=10)
    assert training.model_id is not None and training.model_id > good.id
    assert training.model == "distance"
    assert await eta.current_model(session) is None  # the newest training says so, not the older model


async def test_the_nightly_job_trains_when_trips_arrived_since_and_keeps_the_newest_models(
    session: AsyncSession, monkeypatch,  # noqa: ANN001
) -> None:
    from app import worker

    _, job = worker.cron_jobs()["matching.train_eta"]
    blob = eta.TravelModel(eta.distance_config()).fit(eta.usable(generate_trips(days=1, orders_per_day=100, seed=17))).dumps()
    older = [EtaModel(trained_at=datetime(2026, 1, day, tzinfo=UTC), trips=500, learned_mae_s=200, learned_p90_s=400,
                      baseline_mae_s=300, baseline_p90_s=600, blob=blob) for day in (1, 2)]
    session.add_all(older)
    await _recorded(session, slowdown=2.0)  # arrived in March, after both
    assert await job(session, datetime.now(UTC)) == 0  # 12 trips: too few for the job's 200
    monkeypatch.setattr(eta, "KEEP_MODELS", 2)
    training = await eta.retrain(session, min_trips=10)
    assert training is not None and training.model == "learned"
    kept = (await session.exec(select(EtaModel.id).order_by(EtaModel.id))).all()
    assert kept == [older[1].id, training.model_id]
    assert await eta.retrain(session, min_trips=10) is None  # no trip reached a door since
