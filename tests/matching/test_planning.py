import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from matching.cli import plan
from matching.planning import Job, PlanningError, Problem, Vehicle, evaluate, plan_routes
from pyvrp import CostEvaluator, RandomNumberGenerator, Route, Solution
from pyvrp.stop import FirstFeasible, MaxRuntime, MultipleCriteria

from matching.planning import exchange
from matching.planning.exchange import Exchange
from matching.planning.genetic import _distance, _Member, _planar, _Subpopulation, _visits, genetic_search
from matching.planning.solomon import SolomonFormatError, parse, read
from matching.planning.solver import (
    GENETIC, GENTLE, REAL_FLEET, _assignment, _search, _searches, build_model, search_once,
)

DATA = Path(__file__).parent / "data" / "vrptw"
C101 = DATA / "solomon" / "C101.txt"


def solomon_text(rows: list[str], fleet: str = "  25         200", table_header: bool = True) -> str:
    columns = "CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME"
    header = ["TINY", "", "VEHICLE", "NUMBER     CAPACITY", fleet, "", "CUSTOMER", columns if table_header else "", ""]
    return "\r\n".join(header + rows) + "\r\n"  # the published files end lines with CRLF


# The first 25 customers of C101: Solomon's own 25-customer instance, optimum 3 routes.
C101_25 = "\n".join(C101.read_text().splitlines()[:35]) + "\n"


def cli(*args: str):
    app = typer.Typer(add_completion=False)
    app.command()(plan)
    return CliRunner().invoke(app, list(args))


def check_independently(text: str, routes: list[list[int]]) -> tuple[float, bool]:
    """Distance and feasibility of `routes`, recomputed from the file's rows."""
    rows = {}
    for line in text.splitlines()[9:]:
        if line.strip():
            number, x, y, demand, ready, due, service = map(float, line.split())
            rows[int(number)] = (x, y, demand, ready, due, service)
    capacity = 200
    depot = rows[0]
    total, feasible = 0.0, True
    for route in routes:
        clock, here, load = depot[3], depot, 0.0
        for customer in route:
            there = rows[customer]
            leg = math.hypot(here[0] - there[0], here[1] - there[1])
            total += leg
            clock = max(clock + leg, there[3])
            feasible &= clock <= there[4] + 1e-9
            clock += there[5]
            load += there[2]
            here = there
        leg = math.hypot(here[0] - depot[0], here[1] - depot[1])
        total += leg
        feasible &= clock + leg <= depot[4] + 1e-9 and load <= capacity
    served = sorted(c for route in routes for c in route)
    feasible &= served == sorted(c for c in rows if c != 0)
    return total, feasible


def test_reader_builds_the_problem_from_a_solomon_file():
    problem = read(C101)
    assert problem.name == "C101"
    assert len(problem.vehicles) == 25 and {v.capacity for v in problem.vehicles} == {200}
    assert {(v.earliest, v.latest) for v in problem.vehicles} == {(0.0, 1236.0)}
    assert len(problem.jobs) == 100
    first = problem.jobs[0]
    assert (first.id, first.demand, first.earliest, first.latest, first.service) == (1, 10, 912, 967, 90)
    # Customer 1 at (45, 68), the depot at (40, 50): unrounded Euclidean travel.
    assert problem.travel[0, first.location] == pytest.approx(math.hypot(5, 18), abs=1e-12)


def test_reader_caps_the_fleet_with_vehicles():
    assert len(read(C101, vehicles=10).vehicles) == 10


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (solomon_text(["0 40 50 0 0 1236 0"], table_header=False), 10, "expected the header 'CUST NO."),
        (solomon_text(["0 40 50 0 0 1236 0", "1 45 sixty 10 912 967 90"]), 11, "YCOORD. 'sixty' is not a number"),
        (solomon_text(["0 40 50 0 0 1236 0", "1 45 68 10 -5 967 90"]), 11, "negative time"),
        (solomon_text(["0 40 50 0 0 1236 0", "1 45 68 10 912 900 90"]), 11, "before READY TIME"),
        (solomon_text(["1 45 68 10 912 967 90", "2 45 70 30 825 870 90"]), 10, "must be 0, the depot"),
        (solomon_text([]), 9, "customer 0, the depot, is missing"),
        (solomon_text(["0 40 50 0 0 1236 0"], fleet="25"), 5, "expected 2 fields"),
        (solomon_text(["0 40 50 0 0 1236 0", "1 45 68 10 912 967"]), 11, "expected 7 fields"),
    ],
    ids=["missing-header", "non-numeric", "negative-window", "window-ends-first", "missing-depot",
         "empty-table", "short-fleet-line", "short-row"],
)
def test_reader_rejects_a_bad_file_naming_the_line(text, line, reason):
    with pytest.raises(SolomonFormatError) as caught:
        parse(text)
    assert caught.value.line == line
    assert reason in str(caught.value)


def test_plan_command_exits_2_naming_the_line_of_a_bad_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(solomon_text(["0 40 50 0 0 1236 0", "1 45 68 ten 912 967 90"]))
    result = cli("--instance", str(bad), "--time-limit", "1", "--json")
    assert result.exit_code == 2
    assert "error:" in result.output and "line 11" in result.output and "DEMAND 'ten'" in result.output


def test_plan_command_exits_2_on_a_missing_file(tmp_path):
    result = cli("--instance", str(tmp_path / "absent.txt"), "--json")
    assert result.exit_code == 2 and "error:" in result.output and "cannot read" in result.output


def test_plan_command_prints_a_feasible_plan_with_its_distance_recomputed(tmp_path):
    instance = tmp_path / "c101_25.txt"
    instance.write_text(C101_25)
    result = cli("--instance", str(instance), "--format", "solomon", "--time-limit", "1.5", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"instance", "vehicles", "distance", "feasible", "routes", "seconds"}
    assert out["instance"] == "C101" and out["feasible"] is True
    assert out["vehicles"] == len(out["routes"])
    distance, feasible = check_independently(C101_25, out["routes"])
    assert feasible
    assert out["distance"] == pytest.approx(distance, abs=1e-9)
    assert distance < 191.82  # the known optimum, 191.81 in double precision
    assert 1.0 <= out["seconds"] < 4


def test_vehicles_cap_is_honoured():
    problem = parse(C101_25, vehicles=3)
    result = plan_routes(problem, 1.0)
    assert result.feasible and len(result.routes) <= 3
    assert {route.vehicle for route in result.routes} <= {0, 1, 2}


def test_a_fleet_too_small_gives_an_infeasible_plan_not_a_crash(tmp_path):
    instance = tmp_path / "c101_25.txt"
    instance.write_text(C101_25)  # 460 units of demand, one vehicle of 200
    result = cli("--instance", str(instance), "--time-limit", "1", "--vehicles", "1", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["feasible"] is False and out["vehicles"] <= 1


def line_problem(**vehicle_fields) -> Problem:
    # Locations 0 (depot), 1 and 2 on a line, 10 apart.
    travel = Problem.euclidean([(0, 0), (10, 0), (20, 0)])
    jobs = (
        Job(id="a", location=1, service=5, earliest=30, latest=32),
        Job(id="b", location=2, service=5, earliest=0, latest=60),
    )
    return Problem("line", travel, jobs, (Vehicle(id="v", start=0, end=0, **vehicle_fields),))


def test_evaluate_schedules_waits_and_arrival_times_in_double_precision():
    result = evaluate(line_problem(), {"v": ["a", "b"]})
    (route,) = result.routes
    a, b = route.stops
    assert (a.arrival, a.start, a.departure) == (30, 30, 35)  # left at 20, not at 0, to wait less
    assert route.departure == 20
    assert (b.arrival, b.start, b.departure) == (45, 45, 50)
    assert route.arrival == 70 and route.travel == 40
    assert result.feasible and result.travel == 40


def test_evaluate_marks_a_late_start_or_a_late_return_infeasible():
    assert not evaluate(line_problem(), {"v": ["b", "a"]}).feasible  # a would start at 35 > 32
    assert not evaluate(line_problem(latest=60), {"v": ["a", "b"]}).feasible  # back at 70
    assert not evaluate(line_problem(), {"v": ["a"]}).feasible  # b unassigned


def test_jobs_needing_a_skill_go_to_the_vehicle_that_has_it():
    # Without skills the plain vehicle would take m: it lives there.
    travel = Problem.euclidean([(3, 0), (-10, 0), (3, 0), (-9, 0)])
    jobs = (Job(id="m", location=2, skills=frozenset({"meter"})), Job(id="r", location=3))
    vehicles = (
        Vehicle(id="plain", start=0, end=0),
        Vehicle(id="certified", start=1, end=1, skills=frozenset({"meter", "repair"})),
    )
    result = plan_routes(Problem("skills", travel, jobs, vehicles), 1.0)
    assert result.feasible
    served_by = {stop.job: route.vehicle for route in result.routes for stop in route.stops}
    assert served_by["m"] == "certified"


def test_a_problem_with_a_window_that_ends_before_it_starts_is_refused():
    with pytest.raises(PlanningError):
        Problem("bad", Problem.euclidean([(0, 0), (1, 1)]), (Job(id=1, location=1, earliest=5, latest=4),), ())


def test_the_genetic_search_alone_reaches_the_optimum_of_c101_25_on_its_fleet():
    problem = parse(C101_25, vehicles=3)
    model = build_model(problem)
    solution = search_once(model.data, time.monotonic() + 2.0, 7, GENETIC)
    result = evaluate(problem, _assignment(model, solution))
    assert result.feasible and len(result.routes) == 3
    distance, feasible = check_independently(C101_25, [[stop.job for stop in r.stops] for r in result.routes])
    assert feasible and distance < 191.82


def test_the_genetic_search_keeps_jobs_off_vehicles_without_their_skill():
    travel = Problem.euclidean([(0, 0), (10, 0), (-10, 0), *[(x, y) for x in (-8, -4, 4, 8) for y in (-3, 3)]])
    # Jobs 0-3 sit west, 4-7 east; the eastern vehicle alone may do the western meter jobs.
    jobs = tuple(
        Job(id=k, location=3 + k, skills=frozenset({"meter"}) if k < 2 else frozenset()) for k in range(8)
    )
    vehicles = (
        Vehicle(id="west", start=2, end=2),
        Vehicle(id="east", start=1, end=1, skills=frozenset({"meter"})),
    )
    problem = Problem("skills", travel, jobs, vehicles)
    model = build_model(problem)
    result = evaluate(problem, _assignment(model, search_once(model.data, time.monotonic() + 1.0, 1, GENETIC)))
    assert result.feasible
    served_by = {stop.job: route.vehicle for route in result.routes for stop in route.stops}
    assert served_by[0] == served_by[1] == "east"


def test_routes_are_read_as_pyvrps_scheduled_activities_say():
    data = build_model(read(C101, vehicles=25)).data
    solution = Solution.make_random(data, RandomNumberGenerator(seed=3))
    assert solution.routes()
    for route in solution.routes():  # the fast reading of the printed route, against the slow one
        assert _visits(route) == [activity.idx for activity in route if activity.is_client()]


def test_the_population_keeps_each_members_neighbours_sorted_and_only_living():
    data = build_model(read(C101, vehicles=25)).data
    rng = RandomNumberGenerator(seed=5)
    members = [_Member(Solution.make_random(data, rng), data.num_clients) for _ in range(12)]
    same = _Member(members[0].solution, data.num_clients)
    assert _distance(members[0], same, data.num_clients) == 0
    assert _distance(members[0], members[1], data.num_clients) > 0
    subpopulation = _Subpopulation(data.num_clients)
    costs = CostEvaluator([1], 1, 1)
    for member in members:
        subpopulation.add(member, costs, (1, 1, 1))
    for member in members[:4]:
        subpopulation._remove(member)
    subpopulation.update_fitness(costs, (1, 1, 1))
    living = subpopulation.members
    for member in living:
        others = [m for m in living if m is not member]
        assert {id(near) for _, near in member.closest} == {id(m) for m in others}
        distances = sorted(_distance(member, m, data.num_clients) for m in others)
        assert [d for d, _ in member.closest] == distances
        assert member.diversity == pytest.approx(sum(distances[:5]) / 5)  # cached, yet current


def test_an_exchange_passes_on_feasible_plans_that_improve_once_each(tmp_path, monkeypatch):
    monkeypatch.setattr(exchange, "CHECK_EVERY", 0)  # look at every call
    travel = Problem.euclidean([(0, 0), (5, 0), (10, 0), (0, 10), (-10, 0)])
    jobs = (Job(id=0, location=1, latest=6), *(Job(id=k, location=k + 1) for k in range(1, 4)))
    problem = Problem("line", travel, jobs, tuple(Vehicle(id=v, start=0, end=0) for v in range(2)))
    data = build_model(problem).data

    def plan(*routes: list[int]) -> Solution:
        return Solution(data, [Route(data, visits, 0) for visits in routes])

    feasible = [plan([0, 1], [2, 3]), plan([0, 2], [1, 3])]  # shorter first
    infeasible = plan([1, 0], [2, 3])  # job 0 reached at 15, due by 6
    assert feasible[0].distance() < feasible[1].distance()
    assert all(p.is_feasible() for p in feasible) and not infeasible.is_feasible()
    writer, reader = Exchange(tmp_path, seed=1), Exchange(tmp_path, seed=2)
    writer.publish(infeasible)
    assert reader.arrivals() == []
    writer.publish(feasible[-1])
    assert reader.arrivals() == [feasible[-1]]
    assert reader.arrivals() == []  # read already
    writer.publish(feasible[-1])  # no shorter: not written again
    writer.publish(feasible[0])
    assert reader.arrivals() == [feasible[0]]
    assert writer.arrivals() == []  # a search never reads its own


def test_the_genetic_search_takes_in_the_iterated_searchs_plan_on_a_tight_fleet(tmp_path):
    # R103 on 13 vehicles: no genetic search alone found a plan in 10 s (seeds 1-2); the
    # iterated search does in a second or so, and the genetic search then starts from it.
    problem = read(DATA / "solomon" / "R103.txt", vehicles=13)
    data = build_model(problem).data
    found = _search(data, MultipleCriteria([FirstFeasible(), MaxRuntime(20)]), 2)
    assert found.is_feasible()
    Exchange(tmp_path, seed=2).publish(found)
    plan = genetic_search(data, time.monotonic() + 3.0, 1, Exchange(tmp_path, seed=1))
    assert plan.is_feasible() and plan.distance() <= found.distance()


def test_the_genetic_search_on_two_threads_reaches_the_optimum_of_c101_25():
    problem = parse(C101_25, vehicles=3)
    model = build_model(problem)
    solution = search_once(model.data, time.monotonic() + 2.0, 7, GENETIC, threads=2)
    result = evaluate(problem, _assignment(model, solution))
    assert result.feasible and len(result.routes) == 3 and result.travel < 191.82


def test_planar_points_reproduce_a_euclidean_travel_matrix():
    points = [(0, 0), (3, 4), (-7, 2), (10, -5), (6, 6)]
    problem = Problem("points", Problem.euclidean(points), tuple(Job(id=k, location=k) for k in range(1, 5)),
                      (Vehicle(id="v", start=0, end=0),))
    planar = _planar(build_model(problem).data)
    recovered = np.linalg.norm(planar[:, None, :] - planar[None, :, :], axis=-1)
    assert recovered == pytest.approx(problem.travel * 1000, abs=1.0)  # PyVRP's matrix is in milli-units


@pytest.mark.parametrize(
    ("jobs", "vehicles", "workers", "expected"),
    [
        # short routes: the iterated search, which reaches tight fleets, beside the genetic one
        (100, 25, 2, (GENETIC, 1, [REAL_FLEET])),
        (100, 25, 3, (GENETIC, 2, [REAL_FLEET])),
        (100, 25, 1, (REAL_FLEET, 1, [])),  # one core: that one
        (100, 3, 2, (GENETIC, 2, [])),  # long routes
        (15, 1, 2, (REAL_FLEET, 1, [REAL_FLEET])),  # one route: nothing to cross
        (40, 1, 2, (GENTLE, 1, [GENTLE])),
        (200, 20, 2, (GENETIC, 2, [])),  # larger: one population on both cores
        (200, 4, 2, (GENETIC, 1, [GENTLE])),  # larger, long routes: gentle penalties beside
        (200, 4, 1, (GENETIC, 1, [])),
        (150, 1, 3, (GENTLE, 1, [GENTLE, GENTLE])),
    ],
)
def test_each_search_runs_where_it_wins(jobs, vehicles, workers, expected):
    travel = Problem.euclidean([(k, 0) for k in range(jobs + 1)])
    problem = Problem(
        "line", travel, tuple(Job(id=k, location=k + 1) for k in range(jobs)),
        tuple(Vehicle(id=v, start=0, end=0) for v in range(vehicles)),
    )
    assert _searches(problem, workers) == expected
