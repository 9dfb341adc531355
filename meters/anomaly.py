"""Per-meter consumption anomalies: suspected leaks and stopped meters. Pure.

Series in, findings out. The only module in the project that imports sklearn.

Daily consumption is compared with the meter's own past: the trailing 28-day median,
the same weekday over the last four weeks, the same season a year earlier (when the
history reaches back that far), and the low envelope (a leak lifts every day, so the
quietest days move most clearly). An IsolationForest fitted on the meter's history
before `since` scores each later day; an alarm needs the score, averaged over
`persistence_days`, to exceed anything seen in that history, with consumption up.

Rules cover what a forest on daily levels cannot see or would explain away:
- meter_stopped: a run of zero days whose missing volume (days x expected daily use)
  is large; short zero runs are ordinary absences.
- continuous night flow (hourly data): every night hour flowing for several nights in a
  row on a meter whose history had quiet nights. Raised as suspected_leak.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
from sklearn.ensemble import IsolationForest

FindingKind = Literal["suspected_leak", "meter_stopped"]

_YEAR = 365
_SEASON_HALF_WIDTH = 14
_BASELINE_DAYS = 28
_FLOOR_DAYS = 14
_FLOOR_QUANTILE = 0.2


@dataclass(frozen=True, slots=True)
class AnomalyFinding:
    meter_id: str
    kind: FindingKind
    start_day: date
    score: float
    evidence: dict = field(hash=False)


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    # A full year, so the heating season onset is part of what the meter has shown before.
    min_history_days: int = 365
    persistence_days: int = 7
    # Alarm when the smoothed score exceeds this quantile of the history's smoothed scores
    # by `threshold_margin`; 1.0 = the worst the meter's own history ever looked.
    threshold_quantile: float = 1.0
    threshold_margin: float = 0.03  # chosen on the pygazpar sample: 0 clean alarms there
    n_estimators: int = 100
    random_state: int = 0
    stopped_min_days: int = 7
    stopped_min_missing_m3: float = 30.0
    night_hours: tuple[int, ...] = (1, 2, 3, 4)
    night_flow_m3_per_hour: float = 0.005
    night_flow_min_nights: int = 3


def detect_anomalies(
    meter_id: str,
    daily: Sequence[tuple[date, float]],
    hourly: Sequence[tuple[datetime, float]] | None = None,
    *,
    since: date | None = None,
    config: AnomalyConfig = AnomalyConfig(),
) -> list[AnomalyFinding]:
    """Findings on days >= `since` (default: once `min_history_days` of history exist).

    Days before `since` are the meter's history: the forest is fitted on them and the
    rules take their expectations from them. Missing days are allowed (not scored).
    """
    start, values = _daily_array(daily)
    if since is None:
        since = start + timedelta(days=config.min_history_days)
    first = max(0, (since - start).days)
    findings: list[AnomalyFinding] = []
    if first >= config.min_history_days and first < len(values):
        findings += _forest_leaks(meter_id, start, values, first, config)
    findings += _stopped(meter_id, start, values, first, config)
    if hourly:
        findings += _night_flow(meter_id, hourly, since, config)
    return sorted(findings, key=lambda f: (f.start_day, f.kind))


# --- input -----------------------------------------------------------------------------


def _check_volume(when: date | datetime, m3: float) -> float:
    value = float(m3) if isinstance(m3, numbers.Real) and not isinstance(m3, bool) else math.nan
    if not math.isfinite(value):
        raise ValueError(f"consumption on {when.isoformat()} is not a finite number: {m3!r}")
    if value < 0:
        raise ValueError(f"consumption on {when.isoformat()} is negative: {m3}")
    return value


def _daily_array(daily: Sequence[tuple[date, float]]) -> tuple[date, np.ndarray]:
    """The series on a contiguous calendar, NaN where a day is missing."""
    if not daily:
        raise ValueError("daily series is empty")
    by_day: dict[date, float] = {}
    for day, m3 in daily:
        value = _check_volume(day, m3)
        if day in by_day:
            raise ValueError(f"day {day.isoformat()} appears twice")
        by_day[day] = value
    start, end = min(by_day), max(by_day)
    values = np.full((end - start).days + 1, np.nan)
    for day, m3 in by_day.items():
        values[(day - start).days] = m3
    return start, values


# --- isolation forest on daily features -----------------------------------------------


def _nanmedian(window: np.ndarray) -> float:
    finite = window[np.isfinite(window)]
    return float(np.median(finite)) if finite.size * 2 >= window.size and finite.size else math.nan


def _nanquantile(window: np.ndarray, q: float) -> float:
    finite = window[np.isfinite(window)]
    return float(np.quantile(finite, q)) if finite.size * 2 >= window.size and finite.size else math.nan


def _log_ratio(value: float, base: float, offset: float) -> float:
    return math.log((value + offset) / (base + offset))


def _daily_features(values: np.ndarray, offset: float) -> np.ndarray:
    """One row per day; NaN rows where the day or its trailing baseline is missing.

    Columns: level vs trailing 28-day median, vs same weekday of the last 4 weeks, vs the
    same season last year, low envelope (20th percentile of 14 days) vs the 14 days before
    it or, when available, vs the same season last year.
    """
    n = len(values)
    rows = np.full((n, 4), np.nan)
    for t in range(_BASELINE_DAYS, n):
        v = values[t]
        base = _nanmedian(values[t - _BASELINE_DAYS : t])
        if not (math.isfinite(v) and math.isfinite(base)):
            continue
        weekday = _nanmedian(values[t - _BASELINE_DAYS : t : 7])
        floor = _nanquantile(values[t - _FLOOR_DAYS + 1 : t + 1], _FLOOR_QUANTILE)
        floor_before = _nanquantile(values[t - 2 * _FLOOR_DAYS + 1 : t - _FLOOR_DAYS + 1], _FLOOR_QUANTILE)
        season, floor_season = math.nan, math.nan
        if t - _YEAR - _SEASON_HALF_WIDTH >= 0:
            last_year = values[t - _YEAR - _SEASON_HALF_WIDTH : t - _YEAR + _SEASON_HALF_WIDTH + 1]
            season = _nanmedian(last_year)
            floor_season = _nanquantile(last_year, _FLOOR_QUANTILE)
        level = _log_ratio(v, base, offset)
        rows[t] = (
            level,
            _log_ratio(v, weekday, offset) if math.isfinite(weekday) else level,
            _log_ratio(v, season, offset) if math.isfinite(season) else level,
            _log_ratio(floor, floor_season if math.isfinite(floor_season) else floor_before, offset)
            if math.isfinite(floor)
            else 0.0,
        )
    return rows


def _smoothed(scores: np.ndarray, days: int) -> np.ndarray:
    out = np.full_like(scores, np.nan)
    for t in range(days - 1, len(scores)):
        window = scores[t - days + 1 : t + 1]
        if np.isfinite(window).sum() * 2 > days:
            out[t] = np.nanmean(window)
    return out


def _forest_leaks(
    meter_id: str, start: date, values: np.ndarray, first: int, config: AnomalyConfig
) -> list[AnomalyFinding]:
    history = values[:first]
    # The offset keeps zero days from dominating the log ratios: a tenth of typical use.
    offset = max(0.1, 0.1 * float(np.nanmedian(history)))
    features = _daily_features(values, offset)
    usable = np.isfinite(features).all(axis=1)
    train = np.flatnonzero(usable[:first])
    if train.size < config.persistence_days * 4:
        return []
    forest = IsolationForest(n_estimators=config.n_estimators, random_state=config.random_state)
    # One-sided: only rises matter for leaks; drops (absences) would otherwise fill the
    # history with extremes that hide a leak. Drops are the stopped-meter rule's job.
    rises = np.maximum(features, 0.0)
    forest.fit(rises[train])
    scores = np.full(len(values), np.nan)
    scores[usable] = -forest.score_samples(rises[usable])  # higher = more anomalous
    smooth = _smoothed(scores, config.persistence_days)
    history_smooth = smooth[:first][np.isfinite(smooth[:first])]
    if history_smooth.size == 0:
        return []
    threshold = float(np.quantile(history_smooth, config.threshold_quantile)) + config.threshold_margin

    findings = []
    t = first
    while t < len(values):
        window = slice(t - config.persistence_days + 1, t + 1)
        level_up = np.nanmean(features[window, 0]) > 0 and np.nanmean(features[window, 2]) > 0
        if not (smooth[t] > threshold and level_up):
            t += 1
            continue
        episode_end = t
        while episode_end + 1 < len(values) and smooth[episode_end + 1] > threshold:
            episode_end += 1
        onset = max(first, t - config.persistence_days + 1)
        recent = values[onset : t + 1]
        findings.append(
            AnomalyFinding(
                meter_id=meter_id,
                kind="suspected_leak",
                start_day=start + timedelta(days=onset),
                score=float(smooth[t] - threshold),
                evidence={
                    "rule": "isolation_forest",
                    "detected_on": (start + timedelta(days=t)).isoformat(),
                    "smoothed_score": round(float(smooth[t]), 4),
                    "threshold": round(threshold, 4),
                    "recent_median_m3": round(_nanmedian(recent), 3),
                    "history_median_m3": round(float(np.nanmedian(history)), 3),
                    "ratio_to_last_28_days": round(math.exp(float(np.nanmean(features[window, 0]))), 3),
                    "ratio_to_same_season_last_year": round(
                        math.exp(float(np.nanmean(features[window, 2]))), 3
                    ),
                    "alarm_days": episode_end - t + 1,
                },
            )
        )
        t = episode_end + 1
    return findings


# --- rules ---------------------------------------------------------------------------


def _stopped(
    meter_id: str, start: date, values: np.ndarray, first: int, config: AnomalyConfig
) -> list[AnomalyFinding]:
    findings = []
    t = 0
    n = len(values)
    while t < n:
        if values[t] != 0:
            t += 1
            continue
        run_start = t
        while t < n and values[t] == 0:
            t += 1
        days = t - run_start
        # Expected use: the busier of the four weeks before and the same season last year,
        # so a meter stopping as the heating season starts is still caught.
        expected = [_nanmedian(values[max(0, run_start - _BASELINE_DAYS) : run_start])]
        if run_start - _YEAR - _SEASON_HALF_WIDTH >= 0:
            centre = run_start - _YEAR + days // 2
            expected.append(_nanmedian(values[centre - _SEASON_HALF_WIDTH : centre + _SEASON_HALF_WIDTH + 1]))
        expected_m3 = max((e for e in expected if math.isfinite(e)), default=math.nan)
        missing = days * expected_m3
        if t - 1 < first or days < config.stopped_min_days or not missing >= config.stopped_min_missing_m3:
            continue
        findings.append(
            AnomalyFinding(
                meter_id=meter_id,
                kind="meter_stopped",
                start_day=start + timedelta(days=run_start),
                score=missing / config.stopped_min_missing_m3,
                evidence={
                    "rule": "zero_flow_streak",
                    "zero_days": days,
                    "expected_m3_per_day": round(expected_m3, 3),
                    "missing_m3": round(missing, 3),
                    "last_day": (start + timedelta(days=t - 1)).isoformat(),
                },
            )
        )
    return findings


def _night_flow(
    meter_id: str, hourly: Sequence[tuple[datetime, float]], since: date, config: AnomalyConfig
) -> list[AnomalyFinding]:
    nights: dict[date, dict[int, float]] = {}
    flowing_hours: list[tuple[datetime, bool]] = []
    for at, m3 in hourly:
        value = _check_volume(at, m3)
        flowing_hours.append((at, value > config.night_flow_m3_per_hour))
        if at.hour in config.night_hours:
            nights.setdefault(at.date(), {})[at.hour] = value
    # A night counts only when every night hour was read.
    complete = {
        day: min(hours.values())
        for day, hours in sorted(nights.items())
        if len(hours) == len(config.night_hours)
    }
    if not any(m <= config.night_flow_m3_per_hour for d, m in complete.items() if d < since):
        # No quiet night in the history: constant flow is this meter's normal (or unknown).
        return []

    findings = []
    run: list[date] = []
    for day, minimum in [*complete.items(), (date.max, 0.0)]:
        flowing = minimum > config.night_flow_m3_per_hour
        if flowing and (not run or day - run[-1] == timedelta(days=1)):
            run.append(day)
            continue
        if len(run) >= config.night_flow_min_nights and run[-1] >= since:
            minimums = [complete[d] for d in run]
            findings.append(
                AnomalyFinding(
                    meter_id=meter_id,
                    kind="suspected_leak",
                    start_day=run[0],
                    score=len(run) / config.night_flow_min_nights,
                    evidence={
                        "rule": "continuous_night_flow",
                        "nights": len(run),
                        "min_night_flow_m3_per_hour": round(min(minimums), 4),
                        "median_min_night_flow_m3_per_hour": round(float(np.median(minimums)), 4),
                        "longest_continuous_flow_hours": _longest_flow_run(flowing_hours),
                    },
                )
            )
        run = [day] if flowing else []
    return findings


def _longest_flow_run(flowing_hours: list[tuple[datetime, bool]]) -> int:
    longest = current = 0
    previous: datetime | None = None
    for at, flowing in sorted(flowing_hours):
        contiguous = previous is not None and at - previous == timedelta(hours=1)
        current = current + 1 if flowing and contiguous else int(flowing)
        longest = max(longest, current)
        previous = at
    return longest
