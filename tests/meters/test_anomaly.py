"""Anomaly detection on a real household series.

data/pygazpar_daily_data_sample.json is a verbatim copy of
pygazpar/resources/daily_data_sample.json from the PyPI package pygazpar 1.3.1
(one French household's GrDF daily gas readings, 2019-05-09..2021-04-18, 711 days).
"""

import json
import math
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from meters.anomaly import detect_anomalies

SAMPLE = Path(__file__).parent / "data" / "pygazpar_daily_data_sample.json"


@pytest.fixture(scope="module")
def daily():
    rows = json.loads(SAMPLE.read_text())
    return [(datetime.strptime(r["time_period"], "%d/%m/%Y").date(), r["volume_m3"]) for r in rows]


def after_first_year(series):
    return series[365][0]


def test_clean_series_raises_no_finding(daily):
    assert detect_anomalies("m1", daily, since=after_first_year(daily)) == []


def test_ordinary_absences_are_not_a_stopped_meter(daily):
    # The household's own zero runs: 4 and 6 days in winter, 14 days in summer.
    assert detect_anomalies("m1", daily, since=daily[200][0]) == []


def test_large_leak_is_detected_within_two_weeks(daily):
    onset = 450  # 2020-08-02, summer
    leaky = [(d, v + 5.0 if i >= onset else v) for i, (d, v) in enumerate(daily)]
    findings = detect_anomalies("m1", leaky, since=after_first_year(daily))
    # A lasting leak may come and go above the threshold: several episodes, all after onset.
    assert {f.kind for f in findings} == {"suspected_leak"}
    assert findings[0].start_day >= daily[onset][0] - timedelta(days=7)
    detected_on = date.fromisoformat(findings[0].evidence["detected_on"])
    assert daily[onset][0] <= detected_on <= daily[onset][0] + timedelta(days=14)
    assert findings[0].evidence["ratio_to_last_28_days"] > 1


def test_stopped_meter_in_winter_is_found(daily):
    stop = 590  # 2020-12-19, usage around 11 m3/day
    stopped = [(d, 0.0 if stop <= i < stop + 10 else v) for i, (d, v) in enumerate(daily)]
    findings = detect_anomalies("m1", stopped, since=after_first_year(daily))
    assert [(f.kind, f.start_day) for f in findings] == [("meter_stopped", daily[stop][0])]
    assert findings[0].evidence["zero_days"] == 10
    assert findings[0].evidence["missing_m3"] >= 30


def test_meter_stopped_for_good_is_found(daily):
    # Identical index readings from some day on: zero consumption to the end.
    stop = 650
    stopped = [(d, 0.0 if i >= stop else v) for i, (d, v) in enumerate(daily)]
    kinds = {f.kind for f in detect_anomalies("m1", stopped, since=after_first_year(daily))}
    assert kinds == {"meter_stopped"}


def _hourly(nights, leak_from, leak_m3_per_hour=0.05):
    start = datetime(2024, 1, 1)
    series = []
    for h in range(24 * nights):
        at = start + timedelta(hours=h)
        base = 0.4 if 7 <= at.hour <= 22 else 0.0
        series.append((at, base + (leak_m3_per_hour if h >= 24 * leak_from else 0.0)))
    return series


def _daily_of(hourly):
    totals = {}
    for at, m3 in hourly:
        totals[at.date()] = totals.get(at.date(), 0.0) + m3
    return sorted(totals.items())


def test_continuous_night_flow_raises_a_suspected_leak():
    hourly = _hourly(40, leak_from=30)
    findings = detect_anomalies("m1", _daily_of(hourly), hourly, since=date(2024, 1, 25))
    assert [(f.kind, f.evidence["rule"]) for f in findings] == [("suspected_leak", "continuous_night_flow")]
    assert findings[0].start_day == date(2024, 1, 31)
    assert findings[0].evidence["min_night_flow_m3_per_hour"] == pytest.approx(0.05)
    assert findings[0].evidence["longest_continuous_flow_hours"] >= 24 * 10 - 1


def test_quiet_nights_raise_nothing():
    hourly = _hourly(40, leak_from=40)
    assert detect_anomalies("m1", _daily_of(hourly), hourly, since=date(2024, 1, 25)) == []


def test_meter_that_always_flows_at_night_is_not_flagged():
    hourly = _hourly(40, leak_from=0)
    assert detect_anomalies("m1", _daily_of(hourly), hourly, since=date(2024, 1, 25)) == []


@pytest.mark.parametrize(
    "series,message",
    [
        ([], "empty"),
        ([(date(2024, 1, 1), 1.0), (date(2024, 1, 2), -0.1)], "negative"),
        ([(date(2024, 1, 1), math.nan)], "not a finite number"),
        ([(date(2024, 1, 1), math.inf)], "not a finite number"),
        ([(date(2024, 1, 1), "3.2")], "not a finite number"),
        ([(date(2024, 1, 1), 1.0), (date(2024, 1, 1), 2.0)], "appears twice"),
    ],
)
def test_bad_daily_input_is_rejected(series, message):
    with pytest.raises(ValueError, match=message):
        detect_anomalies("m1", series)


def test_nan_in_hourly_input_is_rejected():
    hourly = [(datetime(2024, 1, 1, 3), math.nan)]
    with pytest.raises(ValueError, match="not a finite number"):
        detect_anomalies("m1", [(date(2024, 1, 1), 1.0)], hourly)
