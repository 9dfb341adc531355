from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from matching.assign import batch, best_candidate, greedy
from matching.eligibility import is_eligible
from matching.model import CertificationView, MatchingConfig, OrderView, TechnicianView
from matching.scoring import eta_s
from matching.values import ValueTable

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CONFIG = MatchingConfig(default_radius_m=10_000)
KM = 1 / 111.2  # degrees of latitude per km


def order(id_, km_north=0.0, *, minutes_ago=0, priority="routine", skill="repair"):
    created = NOW - timedelta(minutes=minutes_ago)
    return OrderView(id_, 116.40, 39.90 + km_north * KM, skill, priority, created,
                     created + timedelta(hours=4))


def tech(id_, km_north=0.0, *, max_jobs=1, active_jobs=0, skills=("repair",), radius_m=None):
    certs = tuple(CertificationView(s, True) for s in skills)
    return TechnicianView(id_, 116.40, 39.90 + km_north * KM, "online", certs, active_jobs,
                          max_jobs, 4.5, NOW, None, radius_m)


def pairs(assignments):
    return {(a.order_id, a.technician_id) for a in assignments}


def test_greedy_serves_an_emergency_before_older_routine_orders():
    orders = [order("old", minutes_ago=30), order("leak", 0.5, priority="emergency")]
    only = [tech("t1", 1)]
    assert pairs(greedy(orders, {"old": only, "leak": only}, NOW, CONFIG)) == {("leak", "t1")}


def test_greedy_is_first_come_first_served_among_routine_orders():
    orders = [order("new", 0.9, minutes_ago=1), order("old", 5, minutes_ago=20)]
    only = [tech("t1", 1)]
    assert pairs(greedy(orders, {"new": only, "old": only}, NOW, CONFIG)) == {("old", "t1")}


def test_greedy_takes_the_nearest_eligible_technician():
    near_uncertified = tech("near", 0.1, skills=("inspection",))
    result = greedy([order("o")], {"o": [tech("far", 3), near_uncertified, tech("mid", 2)]},
                    NOW, CONFIG)
    assert pairs(result) == {("o", "mid")}
    assert 1_900 < result[0].distance_m < 2_100


def test_batch_beats_greedy_where_greedy_starves_a_later_order():
    # "a" reaches both orders, "b" (station radius 3 km) only the older one. Greedy hands
    # the older order its nearest technician, "a", and the later order gets nobody.
    orders = [order("first", 0, minutes_ago=10), order("second", 4, minutes_ago=5)]
    a, b = tech("a", 2), tech("b", -2.5, radius_m=3_000)
    candidates = {"first": [a, b], "second": [a, b]}
    assert pairs(greedy(orders, candidates, NOW, CONFIG)) == {("first", "a")}
    assert pairs(batch(orders, candidates, NOW, CONFIG)) == {("first", "b"), ("second", "a")}


def test_batch_never_gives_a_technician_more_than_his_free_slots():
    orders = [order(f"o{i}", i * 0.2) for i in range(4)]
    busy = tech("busy", max_jobs=2, active_jobs=1)
    result = batch(orders, {o.id: [busy] for o in orders}, NOW, CONFIG)
    assert len(result) == 1


def test_batch_gives_a_technician_with_two_free_slots_two_orders():
    orders = [order(f"o{i}", i * 0.2) for i in range(3)]
    two = tech("two", max_jobs=2)
    result = batch(orders, {o.id: [two] for o in orders}, NOW, CONFIG)
    assert Counter(a.technician_id for a in result) == {"two": 2}


def test_batch_prefers_the_nearer_order_when_both_are_equally_fresh():
    orders = [order("far", 3), order("near", 1)]
    only = [tech("t1")]
    assert pairs(batch(orders, {"far": only, "near": only}, NOW, CONFIG)) == {("near", "t1")}


def test_batch_gives_the_technician_to_an_order_that_has_waited_long():
    orders = [order("far_old", 3, minutes_ago=120), order("near_new", 1)]
    only = [tech("t1")]
    assert pairs(batch(orders, {"far_old": only, "near_new": only}, NOW, CONFIG)) == {
        ("far_old", "t1")
    }


def test_batch_skips_ineligible_candidates_and_orders_without_any():
    out_of_range = tech("away", 11)
    result = batch([order("o1"), order("o2")], {"o1": [out_of_range]}, NOW, CONFIG)
    assert result == []


def test_batch_of_no_orders_is_empty():
    assert batch([], {}, NOW, CONFIG) == []


def test_best_candidate_is_the_lowest_cost_eligible_technician():
    leak = order("leak", priority="emergency", skill="emergency")
    certified = tech("certified", 2, skills=("emergency",))
    uncertified = tech("nearer", 0.5)
    best = best_candidate(leak, [uncertified, certified, tech("far", 4, skills=("emergency",))],
                          NOW, CONFIG)
    assert best is not None and best.technician_id == "certified"
    assert best_candidate(leak, [uncertified], NOW, CONFIG) is None


def test_batch_input_is_left_unchanged():
    orders = [order("o1"), order("o2", 1)]
    candidates = {"o1": [tech("t1")], "o2": [tech("t1")]}
    snapshot = {k: list(v) for k, v in candidates.items()}
    batch(orders, candidates, NOW, CONFIG)
    assert candidates == snapshot


@st.composite
def instances(draw):
    n_techs = draw(st.integers(1, 6))
    techs = []
    for i in range(n_techs):
        max_jobs = draw(st.integers(1, 3))
        techs.append(replace(
            tech(f"t{i}", draw(st.floats(-12, 12)), radius_m=draw(st.sampled_from([None, 5_000]))),
            status=draw(st.sampled_from(["online", "online", "online", "busy", "offline"])),
            certifications=(CertificationView(
                "repair", draw(st.booleans()), None,
                draw(st.sampled_from([None, NOW - timedelta(days=1)]))),),
            max_jobs=max_jobs,
            active_jobs=draw(st.integers(0, max_jobs)),
            rating=draw(st.floats(3, 5)),
        ))
    orders = [
        replace(
            order(f"o{j}", draw(st.floats(-8, 8)), minutes_ago=draw(st.integers(0, 240)),
                  priority=draw(st.sampled_from(["emergency", "urgent", "routine"]))),
            excluded_technicians=frozenset(draw(st.lists(st.sampled_from([t.id for t in techs])))),
        )
        for j in range(draw(st.integers(1, 8)))
    ]
    candidates = {
        o.id: draw(st.lists(st.sampled_from(techs), max_size=n_techs + 2)) for o in orders
    }
    return orders, techs, candidates


@settings(max_examples=200, deadline=None)
@given(instances())
def test_batch_respects_capacity_and_assigns_at_least_as_many_as_greedy(instance):
    orders, techs, candidates = instance
    result = batch(orders, candidates, NOW, CONFIG)
    load = Counter(a.technician_id for a in result)
    by_id = {t.id: t for t in techs}
    assert all(load[t] <= by_id[t].free_slots for t in load)
    assert len({a.order_id for a in result}) == len(result)
    orders_by_id = {o.id: o for o in orders}
    for a in result:
        assert by_id[a.technician_id] in candidates[a.order_id]
        assert is_eligible(orders_by_id[a.order_id], by_id[a.technician_id], NOW, CONFIG)
    # Batch finds a maximum matching, so it never leaves more orders open than greedy.
    assert len(result) >= len(greedy(orders, candidates, NOW, CONFIG))
    if any(is_eligible(o, t, NOW, CONFIG) for o in orders for t in candidates[o.id]):
        assert result


# Look-ahead values (issue #17, item 2) -----------------------------------------------------------

def _values(by_km_north: dict[float, float]):
    """Values at 10:00 of the cells at these places (km north of the test origin)."""
    table = ValueTable({})
    return ValueTable({(table.cell(116.40, 39.90 + km * KM), table.slot(NOW)): v for km, v in by_km_north.items()})


def test_look_ahead_sends_the_technician_whose_place_is_worth_least():
    # One order 2 km north; "busy" is 1.8 km south of it where work keeps coming, "quiet" 2.2 km
    # north of it where a technician loses an hour between jobs.
    o, busy, quiet = order("o", 2), tech("busy", 0.2), tech("quiet", 4.2)
    candidates = {"o": [busy, quiet]}
    assert pairs(batch([o], candidates, NOW, CONFIG)) == {("o", "busy")}
    values = _values({0.2: -300.0, 2: -900.0, 4.2: -3600.0})
    assert values.cell(116.40, 39.90 + 0.2 * KM) != values.cell(116.40, 39.90 + 4.2 * KM)
    assert pairs(batch([o], candidates, NOW, CONFIG, values)) == {("o", "quiet")}


def test_values_learned_from_nothing_change_nothing():
    orders = [order(f"o{i}", i * 1.3, minutes_ago=i) for i in range(6)]
    techs = [tech(f"t{i}", i * 1.1 - 1) for i in range(5)]
    candidates = {o.id: techs for o in orders}
    without = pairs(batch(orders, candidates, NOW, CONFIG))
    assert pairs(batch(orders, candidates, NOW, CONFIG, ValueTable({}))) == without


def test_look_ahead_is_left_out_while_orders_outnumber_free_technicians():
    # One technician, two orders: whichever he takes, he has work after it. The values would
    # send him to the farther order (its place is busy, the near one's quiet); the backlog
    # leaves him the near one, as without values.
    t, near, farther = tech("t", 0.2), order("near", 2), order("farther", -2.5)
    values = _values({0.2: -300.0, 2: -3600.0, -2.5: -300.0})
    eta = {o.id: eta_s(1000 * abs(o.lat - t.lat) / KM, CONFIG) for o in (near, farther)}
    gain = {o.id: values.bonus(t.lon, t.lat, o.lon, o.lat, NOW, eta[o.id]) for o in (near, farther)}
    assert gain["farther"] - gain["near"] > eta["farther"] - eta["near"]  # it would tip the choice
    candidates = {"near": [t], "farther": [t]}
    assert pairs(batch([near, farther], candidates, NOW, CONFIG, values)) == {("near", "t")}
