"""Arrival times: when the technician reaches the door, as a range, from his live position.

Two models answer "how long from here to there":
- distance: the matching engine's own estimate, great-circle distance x detour factor / speed
  (`scoring.eta_s`), with a fixed spread around it;
- learned: gradient-boosted quantile regressions (10th, 50th, 90th percentile) fitted on the
  drives technicians actually made (departure -> check-in, `matching_trip_time`) with the
  features distance, local hour, weekday, district and kind. They learn the ratio of the trip to
  the distance model's, so they extrapolate like it beyond the distances they saw.
The learned model is used once `gasdispatch matching train-eta` stored one, which it does only
from at least MIN_TRIPS usable trips, and only while the newest stored one beat the distance
model on the trips it held out (mean and p90 error); otherwise the distance model answers.

A district is the grid cell of the address (DISTRICT_CELL_DEG), the same in every city and
needing no map data. Hour and weekday are the city's local ones.
"""

from __future__ import annotations

import asyncio
import io
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import joblib
import numpy as np
import structlog
from redis.asyncio import Redis
from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from dispatch.events import OrderStatusChanged
from dispatch import queries
from dispatch.cities import timezone_of
from dispatch.models import Order
from kit.config import get_settings
from kit.db import session_scope
from kit.events import handles
from kit.fanout import account_channel, active_orders_key, order_channel, push_now
from kit.geo import lonlat
from kit.redis import get_redis
from matching.index import GeoIndex, TrackPoint
from matching.model import MatchingConfig
from matching.models import EtaModel, TripTime
from matching.scoring import eta_s, haversine_m

log = structlog.get_logger(__name__)

ModelName = Literal["learned", "distance"]
QUANTILES = (0.1, 0.5, 0.9)
MIN_TRIPS = 200  # fewer usable trips than this: the distance model stays
HOLDOUT_SHARE = 0.2
KEEP_MODELS = 30  # a month of nightly trainings; each model is some 0.7 MB
DISTRICT_CELL_DEG = 0.03  # about 3 km: a city of 25 km has some 80 districts
MAX_CATEGORIES = 250  # HistGradientBoosting's limit is 255 bins; the rarest districts share "unknown"
# The distance model's range: traffic makes a late arrival likelier than an early one.
DISTANCE_SPREAD = (0.8, 1.5)
MIN_REFERENCE_S = 60.0  # parking and the stairs: even a trip of a few metres takes this
MIN_RANGE_S = 60.0
USABLE_DURATION_S = (30.0, 4 * 3600.0)  # outside: a check-in forgotten, or a test
# When he leaves: the newest fix of his track the server had by then (plus the event's latency).
DEPARTURE_FIX_SLACK_S = 5.0
HEADING = ("accepted", "en_route")  # the states an order shows an arrival time in
REFRESH_EVERY_S = 15  # a fix recomputes an order's arrival time at most this often
PUSH_CHANGE_S = 60.0  # and pushes it when either end moved by more than this
LAST_PUSHED_TTL_S = 6 * 3600


def district_of(lon: float, lat: float) -> str:
    return f"{math.floor(lon / DISTRICT_CELL_DEG)}:{math.floor(lat / DISTRICT_CELL_DEG)}"


def distance_config() -> MatchingConfig:
    settings = get_settings()
    return MatchingConfig(detour_factor=settings.detour_factor, speed_kmh=settings.speed_kmh)


@dataclass(frozen=True, slots=True)
class TripFeatures:
    distance_m: float
    local_hour: int
    weekday: int
    district: str
    kind: str


@dataclass(frozen=True, slots=True)
class Trip:
    features: TripFeatures
    duration_s: float


def baseline_s(distance_m: float, config: MatchingConfig) -> float:
    """The distance model's point estimate: what matching ranks offers by."""
    return eta_s(distance_m, config)


def _reference_s(distance_m: np.ndarray, config: MatchingConfig) -> np.ndarray:
    return np.maximum(distance_m * config.detour_factor / (config.speed_kmh / 3.6), MIN_REFERENCE_S)


class TravelModel:
    """Quantile regressions of log(trip / distance model) on the trip's features."""

    def __init__(self, config: MatchingConfig, random_state: int = 0) -> None:
        self.config = config
        self.random_state = random_state
        self.districts: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.regressors: dict[float, Any] = {}  # quantile -> HistGradientBoostingRegressor
        self.trips = 0

    def _matrix(self, features: Sequence[TripFeatures]) -> np.ndarray:
        def code(vocabulary: dict[str, int], value: str) -> float:
            return float(vocabulary[value]) if value in vocabulary else math.nan
        return np.array([(f.distance_m, f.local_hour, f.weekday, code(self.districts, f.district),
                          code(self.kinds, f.kind)) for f in features], dtype=float).reshape(-1, 5)

    def fit(self, trips: Sequence[Trip]) -> TravelModel:
        # Imported here: every process imports this module, only training needs the library.
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        def vocabulary(values: list[str]) -> dict[str, int]:
            counts = Counter(values)
            ranked = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
            return {v: i for i, v in enumerate(ranked)}
        self.districts = vocabulary([t.features.district for t in trips])
        self.kinds = vocabulary([t.features.kind for t in trips])
        x = self._matrix([t.features for t in trips])
        y = np.log(np.array([t.duration_s for t in trips]) / _reference_s(x[:, 0], self.config))
        # One thread: OpenMP workers spinning on a shared machine cost far more than they save.
        with threadpool_limits(limits=1, user_api="openmp"):
            for q in QUANTILES:
                self.regressors[q] = HistGradientBoostingRegressor(
                    loss="quantile", quantile=q, max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                    min_samples_leaf=20, categorical_features=[False, False, False, True, True],
                    random_state=self.random_state,
                ).fit(x, y)
        self.trips = len(trips)
        return self

    def predict(self, features: Sequence[TripFeatures]) -> np.ndarray:
        """Seconds, one row per trip: the 10th, 50th and 90th percentile, in increasing order."""
        x = self._matrix(features)
        reference = _reference_s(x[:, 0], self.config)
        out = np.column_stack([reference * np.exp(self.regressors[q].predict(x)) for q in QUANTILES])
        return np.sort(out, axis=1)  # quantile models fitted apart may cross

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(self, buffer)
        return buffer.getvalue()

    @staticmethod
    def loads(blob: bytes) -> TravelModel:
        return joblib.load(io.BytesIO(blob))


@dataclass(frozen=True)
class Figures:
    """Absolute errors of the point estimates on held-out trips, in seconds."""

    trips: int
    learned_mae_s: float
    learned_p90_s: float
    baseline_mae_s: float
    baseline_p90_s: float
    range_coverage: float  # share of held-out trips inside the learned range

    @property
    def learned_better(self) -> bool:
        return beats_distance(self.learned_mae_s, self.learned_p90_s, self.baseline_mae_s, self.baseline_p90_s)


def beats_distance(learned_mae_s: float, learned_p90_s: float, baseline_mae_s: float, baseline_p90_s: float) -> bool:
    """Thin or noisy trips fit a model worse than the straight line: then it is not used."""
    return learned_mae_s < baseline_mae_s and learned_p90_s < baseline_p90_s


def evaluate(model: TravelModel, held_out: Sequence[Trip]) -> Figures:
    predicted = model.predict([t.features for t in held_out])
    actual = np.array([t.duration_s for t in held_out])
    learned = np.abs(predicted[:, 1] - actual)
    baseline = np.abs(np.array([baseline_s(t.features.distance_m, model.config) for t in held_out]) - actual)
    inside = (actual >= predicted[:, 0]) & (actual <= predicted[:, 2])
    return Figures(len(held_out), float(learned.mean()), float(np.percentile(learned, 90)),
                   float(baseline.mean()), float(np.percentile(baseline, 90)), float(inside.mean()))


def usable(trips: Sequence[Trip]) -> list[Trip]:
    low, high = USABLE_DURATION_S
    return [t for t in trips if low <= t.duration_s <= high]


# Recording trips --------------------------------------------------------------------------

def _departure_fix(track: list[TrackPoint], departed_at: datetime) -> TrackPoint | None:
    """The newest fix the server had when he set out; None when the track no longer reaches back."""
    by = departed_at + timedelta(seconds=DEPARTURE_FIX_SLACK_S)
    return next((point for point in track if point.received_at <= by), None)


async def city_zone(session: AsyncSession, city_id: str) -> ZoneInfo:
    return ZoneInfo(await timezone_of(session, city_id))


async def _record_departure(session: AsyncSession, order: Order, technician_id: uuid.UUID) -> None:
    departed_at = await queries.last_step_at(session, order.id, "depart")
    destination = lonlat(order.location)
    if departed_at is None or destination is None:
        return
    settings = get_settings()
    track = await GeoIndex(get_redis(), home_city=settings.city).track(str(technician_id), order.city_id)
    start = _departure_fix(track, departed_at)
    if start is None:
        log.info("eta.trip_without_start", order_id=str(order.id), technician_id=str(technician_id))
        return
    local = departed_at.astimezone(await city_zone(session, order.city_id))
    values: dict[str, Any] = {
        "technician_id": technician_id, "city_id": order.city_id, "kind": order.kind,
        "district": district_of(*destination), "start_lon": start.lon, "start_lat": start.lat,
        "end_lon": destination[0], "end_lat": destination[1],
        "distance_m": haversine_m(start.lon, start.lat, *destination), "local_hour": local.hour,
        "weekday": local.weekday(), "departed_at": departed_at, "arrived_at": None, "duration_s": None}
    # A second departure (operations reassigned the order meanwhile) replaces the first.
    await session.execute(insert(TripTime).values(order_id=order.id, **values)
                          .on_conflict_do_update(index_elements=["order_id"], set_=values))


async def _record_arrival(session: AsyncSession, order: Order, technician_id: uuid.UUID) -> None:
    arrived_at = await queries.last_step_at(session, order.id, "arrive")
    if arrived_at is None:
        return
    await session.exec(update(TripTime).where(
        TripTime.order_id == order.id, TripTime.technician_id == technician_id,
        col(TripTime.arrived_at).is_(None), TripTime.departed_at <= arrived_at,
    ).values(arrived_at=arrived_at,
             duration_s=func.extract("epoch", arrived_at - col(TripTime.departed_at))))


@handles(OrderStatusChanged)
async def on_order_status_changed(session: AsyncSession, event: OrderStatusChanged) -> None:
    """Departure opens a trip from the technician's position then; check-in closes it."""
    if event.to not in ("en_route", "arrived"):
        return
    order = await queries.find_order(session, event.order_id)
    technician_id = event.technician_id or (order.technician_id if order else None)
    if order is None or technician_id is None:
        return
    if event.action == "depart":
        await _record_departure(session, order, technician_id)
    elif event.action == "arrive":
        await _record_arrival(session, order, technician_id)


# Training -------------------------------------------------------------------------------

async def completed_trips(session: AsyncSession) -> list[Trip]:
    """Every recorded trip that reached the door, oldest departure first."""
    rows = (await session.exec(select(TripTime).where(col(TripTime.duration_s).is_not(None))
                               .order_by(TripTime.departed_at))).all()
    return [Trip(TripFeatures(r.distance_m, r.local_hour, r.weekday, r.district, r.kind), float(r.duration_s))
            for r in rows]


@dataclass(frozen=True)
class Training:
    trips: int  # usable trips found
    figures: Figures | None  # on the most recent HOLDOUT_SHARE, by a model fitted on the rest
    model_id: int | None  # None: too few trips, nothing stored

    @property
    def model(self) -> ModelName:
        """What arrival times use after this training."""
        return "learned" if self.figures is not None and self.figures.learned_better else "distance"


def _fit(trips: list[Trip], config: MatchingConfig) -> tuple[Figures, bytes]:
    cut = int(len(trips) * (1 - HOLDOUT_SHARE))
    figures = evaluate(TravelModel(config).fit(trips[:cut]), trips[cut:])
    return figures, TravelModel(config).fit(trips).dumps()


async def train(session: AsyncSession, *, min_trips: int = MIN_TRIPS) -> Training:
    """Fit on the older 80 % of the trips and measure on the newest 20 % (the model is used on
    trips after those it learned from), then fit on all of them and store that model with the
    figures, which decide whether it is used (a losing one is kept for the record)."""
    trips = usable(await completed_trips(session))
    if len(trips) < min_trips:
        return Training(len(trips), None, None)
    # Seconds of CPU: off the event loop, which may be the API's (the embedded worker's nightly run).
    figures, blob = await asyncio.to_thread(_fit, trips, distance_config())
    row = EtaModel(trips=len(trips), learned_mae_s=figures.learned_mae_s, learned_p90_s=figures.learned_p90_s,
                   baseline_mae_s=figures.baseline_mae_s, baseline_p90_s=figures.baseline_p90_s, blob=blob)
    session.add(row)
    await session.flush()
    return Training(len(trips), figures, row.id)


async def retrain(session: AsyncSession, *, min_trips: int = MIN_TRIPS) -> Training | None:
    """The worker's nightly training, so arrival times learn without anybody running train-eta:
    None when no trip reached the door since the newest model; keeps the newest KEEP_MODELS."""
    trained_at = (await session.exec(select(func.max(EtaModel.trained_at)))).one()
    arrived_at = (await session.exec(select(func.max(TripTime.arrived_at)))).one()
    if arrived_at is None or (trained_at is not None and arrived_at <= trained_at):
        return None
    training = await train(session, min_trips=min_trips)
    if training.model_id is not None:
        newest = select(EtaModel.id).order_by(col(EtaModel.id).desc()).limit(KEEP_MODELS)
        await session.exec(delete(EtaModel).where(col(EtaModel.id).not_in(newest.scalar_subquery())))
    return training


_loaded: dict[str, Any] = {"id": None, "model": None}


async def current_model(session: AsyncSession) -> TravelModel | None:
    """The newest stored model, loaded once per process and again only when a newer one is stored;
    None (the distance model) when there is none or it did worse than the distance model."""
    row = (await session.exec(select(EtaModel.id, EtaModel.learned_mae_s, EtaModel.learned_p90_s, EtaModel.baseline_mae_s,
                                     EtaModel.baseline_p90_s).order_by(col(EtaModel.id).desc()).limit(1))).first()
    if row is None or not beats_distance(*row[1:]):
        return None
    newest = row[0]
    if _loaded["id"] != newest:
        blob = (await session.exec(select(EtaModel.blob).where(EtaModel.id == newest))).one()
        _loaded.update(id=newest, model=TravelModel.loads(blob))
    return _loaded["model"]


# Arrival times ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Eta:
    earliest: datetime
    latest: datetime
    model: ModelName

    def public(self) -> dict[str, str]:
        return {"earliest": self.earliest.isoformat(), "latest": self.latest.isoformat(), "model": self.model}


def arrival_range(features: TripFeatures, model: TravelModel | None, config: MatchingConfig) -> tuple[float, float, ModelName]:
    """Seconds from now: the earliest and latest arrival, and which model said so."""
    if model is not None:
        low, _, high = model.predict([features])[0]
        name: ModelName = "learned"
    else:
        point = baseline_s(features.distance_m, config)
        low, high = point * DISTANCE_SPREAD[0], point * DISTANCE_SPREAD[1]
        name = "distance"
    low = max(0.0, float(low))
    return low, max(float(high), low + MIN_RANGE_S), name


async def order_eta(session: AsyncSession, index: GeoIndex, order: Order, now: datetime | None = None) -> Eta | None:
    """The order's arrival range from its technician's latest position; None before acceptance,
    after arrival, or while his position is unknown."""
    if order.status not in HEADING or order.technician_id is None:
        return None
    live = await index.get(str(order.technician_id), order.city_id)
    destination = lonlat(order.location)
    if live is None or destination is None:
        return None
    now = now or datetime.now(UTC)
    local = now.astimezone(await city_zone(session, order.city_id))
    features = TripFeatures(haversine_m(live.lon, live.lat, *destination), local.hour, local.weekday(),
                            district_of(*destination), order.kind)
    low, high, name = arrival_range(features, await current_model(session), distance_config())
    return Eta(now + timedelta(seconds=low), now + timedelta(seconds=high), name)


def refresh_key(order_id: str) -> str:
    return f"matching:eta:refresh:{order_id}"


def last_pushed_key(order_id: str) -> str:
    return f"matching:eta:pushed:{order_id}"


async def _moved(redis: Redis, order_id: str, eta: Eta) -> bool:
    """Whether the arrival range moved enough to tell anybody; remembers what was told."""
    told = await redis.get(last_pushed_key(order_id))
    now_told = f"{eta.earliest.timestamp():.0f} {eta.latest.timestamp():.0f} {eta.model}"
    if told is not None:
        earliest, latest, model = told.split()
        if model == eta.model and abs(float(earliest) - eta.earliest.timestamp()) <= PUSH_CHANGE_S \
                and abs(float(latest) - eta.latest.timestamp()) <= PUSH_CHANGE_S:
            return False
    await redis.set(last_pushed_key(order_id), now_told, ex=LAST_PUSHED_TTL_S)
    return True


async def _push_changed(session: AsyncSession, redis: Redis, index: GeoIndex, technician_id: uuid.UUID,
                        order_ids: list[str]) -> int:
    orders = await queries.orders_in(session, [uuid.UUID(o) for o in order_ids], HEADING)
    account_id = (await queries.technician_accounts(session, [technician_id])).get(technician_id)
    pushes = 0
    for order in orders:
        eta = await order_eta(session, index, order)
        if eta is None or not await _moved(redis, str(order.id), eta):
            continue
        await push_now(redis, order_channel(order.id), "eta", order_id=str(order.id), eta=eta.public())
        if account_id is not None:
            await push_now(redis, account_channel(account_id), "eta", order_id=str(order.id), eta=eta.public())
        pushes += 1
    return pushes


async def refresh_after_fix(redis: Redis, index: GeoIndex, technician_id: uuid.UUID,
                            session: AsyncSession | None = None, order_ids: set[str] | None = None) -> int:
    """After an accepted fix: the arrival range of each order he is heading to, recomputed at
    most every REFRESH_EVERY_S per order and pushed to the customer's order socket and to him
    when it moved by more than PUSH_CHANGE_S; in the caller's session, or a unit of work of its
    own. Returns the pushes made. Never fails the fix: the range is also computed whenever the
    order is read. `order_ids`: his active orders when the caller has read them already."""
    try:
        if order_ids is None:
            order_ids = await redis.smembers(active_orders_key(technician_id))
        due = [order_id for order_id in order_ids
               if await redis.set(refresh_key(order_id), "1", nx=True, ex=REFRESH_EVERY_S)]
        if not due:
            return 0
        if session is not None:
            return await _push_changed(session, redis, index, technician_id, due)
        async with session_scope() as own:
            return await _push_changed(own, redis, index, technician_id, due)
    except Exception as exc:  # the fix itself was stored and relayed; the next one tries again
        log.warning("eta.refresh_failed", technician_id=str(technician_id), error=f"{type(exc).__name__}: {exc}")
        return 0
