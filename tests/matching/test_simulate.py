import json

import pytest
from typer.testing import CliRunner

from matching.cli import app
from matching.scenario import ScenarioError, generate, load, parse
from matching.model import MatchingConfig
from matching.scoring import eta_s, haversine_m
from matching.simulate import simulate

TECH = {"id": "t1", "lon": 116.40, "lat": 39.90, "skills": ["repair"], "rating": 4.6, "max_jobs": 1}
ORDER = {"id": "o1", "t_s": 0, "lon": 116.40, "lat": 39.945, "skill": "repair",
         "priority": "routine", "service_min": 30, "sla_min": 60}


def scenario(techs=(TECH,), orders=(ORDER,), **extra):
    return {"speed_kmh": 25, "detour_factor": 1.3, "technicians": list(techs),
            "orders": list(orders), **extra}


def test_batch_waits_less_than_greedy_on_a_scarce_day_without_losing_sla():
    # 40 technicians, 400 orders in 12 hours with peaks: they are busy ~80% of the day.
    day = generate(technicians=40, orders=400, hours=12, seed=1)
    g = simulate(day, "greedy")
    b = simulate(day, "batch", window_s=60)
    assert g["utilization"] > 0.75
    assert b["mean_wait_min"] <= 0.9 * g["mean_wait_min"]
    assert b["served_within_sla"] >= g["served_within_sla"]
    assert b["served"] >= g["served"]


@pytest.mark.parametrize("policy", ["greedy", "batch"])
def test_single_order_waits_exactly_the_drive(policy):
    result = simulate(parse(scenario()), policy, window_s=30)
    distance = haversine_m(116.40, 39.90, 116.40, 39.945)
    assert result["served"] == result["served_within_sla"] == 1
    assert result["mean_wait_min"] == pytest.approx(eta_s(distance, MatchingConfig()) / 60, abs=0.01)
    assert result["travel_km"] == pytest.approx(distance * 1.3 / 1000, abs=0.1)


def test_order_nobody_can_serve_is_unfulfilled():
    leak = {**ORDER, "skill": "emergency", "priority": "emergency"}
    result = simulate(parse(scenario(orders=[leak])), "batch")
    assert (result["served"], result["unfulfilled"]) == (0, 1)
    assert result["mean_wait_min"] is None


def test_second_order_of_a_two_job_technician_waits_for_the_first():
    second = {**ORDER, "id": "o2", "lat": 39.945 + 0.0001}
    result = simulate(parse(scenario(techs=[{**TECH, "max_jobs": 2}], orders=[ORDER, second])),
                      "batch")
    drive = eta_s(haversine_m(116.40, 39.90, 116.40, 39.945), MatchingConfig()) / 60
    assert result["served"] == 2
    # Waits are `drive` and `drive + 30 min of service + 11 m`: the mean is half-way.
    assert result["mean_wait_min"] == pytest.approx(drive + 15, abs=0.05)


def test_generator_is_seeded_clustered_and_peaks_in_the_morning():
    a, b = generate(20, 600, 12, seed=3), generate(20, 600, 12, seed=3)
    assert a == b != generate(20, 600, 12, seed=4)
    hours = [o.t_s // 3600 for o in a.orders]  # the day starts at 07:00
    assert hours.count(2) > 1.5 * hours.count(5)  # 09:00 vs 12:00
    assert len(a.orders) == 600 and len(a.technicians) == 20
    assert parse(json.loads(json.dumps(a.to_dict()))) == a


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (scenario(orders=[ORDER, {**ORDER, "id": "o2"}, ORDER | {"id": "o3"},
                          {**ORDER, "id": "o4", "lat": 95}]), "orders[3].lat: out of range"),
        (scenario(orders=[{k: v for k, v in ORDER.items() if k != "lon"}]), "orders[0].lon: missing"),
        (scenario(orders=[{**ORDER, "t_s": "soon"}]), "orders[0].t_s: not a number"),
        (scenario(orders=[{**ORDER, "skill": "plumbing"}]), "orders[0].skill: 'plumbing'"),
        (scenario(orders=[{**ORDER, "priority": "whenever"}]), "orders[0].priority"),
        (scenario(orders=[ORDER, ORDER]), "orders[1].id: duplicate"),
        (scenario(techs=[{**TECH, "lon": 200}]), "technicians[0].lon: out of range"),
        (scenario(techs=[{**TECH, "skills": []}]), "technicians[0].skills"),
        (scenario(techs=[{**TECH, "max_jobs": 1.5}]), "technicians[0].max_jobs: not an integer"),
        (scenario(techs=["t1"]), "technicians[0]: not an object"),
        ({"orders": []}, "technicians: missing"),
        ([], "scenario: not a JSON object"),
    ],
)
def test_malformed_scenario_names_the_field(data, message):
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(data)


def test_unknown_fields_are_ignored_and_priority_follows_the_skill():
    leak = {**ORDER, "skill": "emergency", "colour": "red"}
    del leak["priority"]
    parsed = parse(scenario(orders=[leak], city="Beijing"))
    assert parsed.orders[0].priority == "emergency"


def test_invalid_json_file_is_a_scenario_error(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"technicians": [', encoding="utf-8")
    with pytest.raises(ScenarioError, match="invalid JSON at line 1"):
        load(path)


def test_cli_rejects_a_malformed_scenario_with_exit_2(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(scenario(orders=[{**ORDER, "lat": -91}])), encoding="utf-8")
    result = CliRunner().invoke(app, ["--scenario", str(path), "--json"])
    assert result.exit_code == 2
    assert "orders[0].lat: out of range" in result.stderr
    assert result.stdout == ""


def test_cli_generates_then_simulates_with_one_json_object(tmp_path):
    path = tmp_path / "day.json"
    runner = CliRunner()
    made = runner.invoke(app, ["--generate", str(path), "--technicians", "5", "--orders", "20",
                               "--hours", "2", "--seed", "9"])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["--scenario", str(path), "--policy", "greedy", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["policy"], figures["seed"], figures["orders"]) == ("greedy", 9, 20)
    assert figures["served"] + figures["unfulfilled"] == 20
