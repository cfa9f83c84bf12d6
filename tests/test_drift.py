"""Data drift (monitoring.drift): thresholds calibrated on the reference's own weeks keep natural change quiet
and catch real shifts; the scipy distances used for calibration are Evidently's, to 1e-9."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import (
    DriftError,
    DriftResult,
    calibrate,
    column_distance,
    detect,
    distribution_drift,
    periods,
    save,
)

WEEKS = 6
ROWS = 2000  # per week
WINDOW = 2000  # = ROWS: calibration compares whole weeks
T0 = pd.Timestamp("2026-01-05")
COUNTRIES = ["de", "fr", "it", "es"]
DEVICES = ["android", "ios", "web"]
NORMALS = ["x0", "x1", "x2", "x3"]
TESTED = [*NORMALS, "spend", "seasonal", "visits", "with_nulls", "tier", "country", "vip", "device"]
SKIPPED = ["constant", "blank"]
FEATURES = TESTED + SKIPPED
TOL = 1e-9  # scipy against Evidently: the same formulas on the same numbers


def make_week(
    rng: np.random.Generator, week: int, *, shift: dict[str, float] | None = None, gold: float = 0.2
) -> pd.DataFrame:
    """One week of the process: means wobble by 0.05 sd and shares by up to 2 points from week to week;
    ``seasonal``'s mean follows 0.25 sin(week) (natural change larger than Evidently's default threshold).
    ``shift`` adds that many standard deviations to a column; ``gold`` is the ``tier`` share of "gold"."""
    shift = shift or {}

    def wobble() -> float:
        return 0.05 * float(rng.standard_normal())

    def share(p: float) -> float:
        return p + 0.02 * float(rng.uniform(-1, 1))

    frame = {f"x{i}": rng.normal(i + wobble() + shift.get(f"x{i}", 0.0), 1.0, ROWS) for i in range(4)}
    frame["spend"] = rng.lognormal(3.0 + wobble(), 1.0, ROWS)
    frame["seasonal"] = rng.normal(0.25 * np.sin(week) + wobble(), 1.0, ROWS)
    frame["visits"] = rng.poisson(3.0 + wobble(), ROWS)
    nulls = rng.normal(10.0 + wobble() + shift.get("with_nulls", 0.0), 1.0, ROWS)
    frame["with_nulls"] = np.where(rng.random(ROWS) < 0.1, np.nan, nulls)
    g = share(gold)
    frame["tier"] = rng.choice(["gold", "basic"], ROWS, p=[g, 1 - g])
    c = np.array([share(0.4), share(0.3), share(0.2), 0.0])
    c[3] = 1 - c[:3].sum()
    frame["country"] = rng.choice(COUNTRIES, ROWS, p=c)
    frame["vip"] = rng.random(ROWS) < share(0.1)
    d = share(0.5)
    frame["device"] = pd.Categorical(rng.choice(DEVICES, ROWS, p=[d, 0.3, 0.7 - d]), categories=DEVICES)
    frame["constant"] = 1.0
    frame["blank"] = np.nan
    frame["campaign_at"] = T0 + pd.Timedelta(weeks=week)
    return pd.DataFrame(frame)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    return pd.concat([make_week(rng, w) for w in range(WEEKS)], ignore_index=True)


@pytest.fixture(scope="module")
def thresholds(reference: pd.DataFrame) -> pd.DataFrame:
    return calibrate(reference, FEATURES, "campaign_at", window=WINDOW)


def run(reference: pd.DataFrame, current: pd.DataFrame, thresholds: pd.DataFrame, seed: int = 0) -> DriftResult:
    return detect(reference, current, thresholds, window=WINDOW, seed=seed)


def drifted_columns(result: DriftResult) -> list[str]:
    return list(result.columns.loc[result.columns["drifted"], "column"])


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_another_week_of_the_same_process_raises_no_alarm(reference, thresholds, seed):
    current = make_week(np.random.default_rng(100 + seed), WEEKS + seed)
    result = run(reference, current, thresholds, seed=seed)
    assert drifted_columns(result) == []
    assert not result.drifted
    assert sorted(result.columns["column"]) == sorted(TESTED)
    assert result.skipped == SKIPPED


def test_natural_weekly_change_stays_quiet_where_evidentlys_default_would_alarm(reference, thresholds):
    from evidently.legacy.calculations.stattests import wasserstein_stat_test

    current = make_week(np.random.default_rng(7), 2)  # seasonal's highest week in the reference
    row = run(reference, current, thresholds).columns.set_index("column").loc["seasonal"]
    assert row["score"] > wasserstein_stat_test.default_threshold  # 0.1: the default would flag it
    assert not row["drifted"]


def test_one_sd_mean_shift_drifts_that_column_only(reference, thresholds):
    current = make_week(np.random.default_rng(8), WEEKS, shift={"x2": 1.0})
    result = run(reference, current, thresholds)
    assert drifted_columns(result) == ["x2"]
    assert result.columns.set_index("column").at["x2", "score"] == pytest.approx(1.0, abs=0.1)
    assert not result.drifted  # 1 of 12 columns
    assert result.share == pytest.approx(1 / len(TESTED))


def test_category_mix_20_80_to_60_40_drifts(reference, thresholds):
    current = make_week(np.random.default_rng(9), WEEKS, gold=0.6)
    result = run(reference, current, thresholds)
    assert drifted_columns(result) == ["tier"]
    # Jensen-Shannon distance (natural log) between (0.2, 0.8) and (0.6, 0.4) is 0.294
    assert result.columns.set_index("column").at["tier", "score"] == pytest.approx(0.294, abs=0.03)


@pytest.fixture(scope="module")
def half_shifted(reference: pd.DataFrame, thresholds: pd.DataFrame) -> DriftResult:
    shift = dict.fromkeys([*NORMALS, "with_nulls"], 1.0)
    return run(reference, make_week(np.random.default_rng(10), WEEKS, shift=shift, gold=0.6), thresholds)


def test_shifting_half_the_columns_drifts_the_dataset(half_shifted):
    assert sorted(drifted_columns(half_shifted)) == sorted([*NORMALS, "with_nulls", "tier"])
    assert half_shifted.share == pytest.approx(0.5)
    assert half_shifted.drifted
    counted = next(m for m in half_shifted.snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
    assert counted["value"] == {"count": 6.0, "share": 0.5}  # Evidently's own count agrees


def test_the_dataset_alarm_needs_more_than_the_share(reference, thresholds, half_shifted):
    current = make_week(np.random.default_rng(10), WEEKS, shift=dict.fromkeys([*NORMALS, "with_nulls"], 1.0), gold=0.6)
    at_the_limit = detect(reference, current, thresholds, window=WINDOW, share=half_shifted.share)
    assert at_the_limit.share == half_shifted.share and not at_the_limit.drifted


def test_windows_are_seeded_samples_of_window_rows(reference, thresholds):
    current = make_week(np.random.default_rng(17), WEEKS)
    small = [detect(reference, current, thresholds, window=500, seed=s).columns["score"] for s in (0, 0, 1)]
    pd.testing.assert_series_equal(small[0], small[1])  # the seed fixes the sample
    assert not np.allclose(small[0], small[2])  # another seed, another sample
    whole = [detect(reference, current, thresholds, window=len(reference), seed=s).columns["score"] for s in (0, 1)]
    pd.testing.assert_series_equal(whole[0], whole[1])  # a window as large as the frames takes every row


def test_summary_names_the_worst_first():
    columns = pd.DataFrame(
        {
            "column": ["a", "b", "c", "d"],
            "score": [0.2, 0.9, 0.05, 0.3],
            "threshold": [0.1, 0.3, 0.1, 0.1],
            "drifted": [True, True, False, True],
        }
    )
    result = DriftResult(columns, 0.75, True, [], None, 0.3)
    assert result.summary() == "3 of 4 features drifted (75.0%; alarm above 30%): b, d, a"
    assert result.summary(top=1) == "3 of 4 features drifted (75.0%; alarm above 30%): b, ..."


def test_thresholds_are_twice_the_largest_distance_between_reference_weeks(reference, thresholds):
    weeks = [reference.iloc[p] for p in periods(reference["campaign_at"])]
    assert len(weeks) == WEEKS
    spec = thresholds.set_index("column")
    assert spec.loc[SKIPPED, "threshold"].isna().all()
    for name in TESTED:
        kind = spec.at[name, "kind"]
        largest = max(column_distance(a[name], b[name], kind) for a, b in combinations(weeks, 2))
        floor = 0.1 if kind == "numeric" else 0.05
        assert spec.at[name, "threshold"] == pytest.approx(max(floor, 2 * largest), rel=TOL), name
        assert spec.at[name, "threshold"] > largest, name
    # seasonal's weekly swing (0.25 sin(week)) sets its threshold well above the floor
    assert spec.at["seasonal", "threshold"] > 0.5
    assert spec.at["with_nulls", "null_max"] == pytest.approx(0.1, abs=0.025)


def test_many_distinct_times_are_grouped_into_six_contiguous_periods():
    times = pd.Series(np.repeat(pd.date_range("2026-01-01", periods=60, freq="D"), 10))
    parts = periods(times)
    assert len(parts) == 6
    assert np.array_equal(np.concatenate(parts), np.arange(len(times)))  # contiguous, every row once
    assert [len(p) for p in parts] == [100] * 6
    assert len(periods(times.iloc[:120])) == 12  # 12 distinct days: one period each


def test_scipy_distances_agree_with_evidentlys(reference, thresholds):
    rng = np.random.default_rng(11)
    ref = reference.iloc[:1500].copy()  # fewer rows than the window: both sides are used whole
    ref.loc[ref.index[:5], "x0"] = np.inf  # dropped by both, as missing values are
    cur = make_week(rng, WEEKS, shift={"x1": 0.3}, gold=0.4).iloc[:900].copy()
    cur.loc[cur.index[:9], "x0"] = -np.inf
    cur.loc[cur.index[:50], "country"] = "pt"  # a category the reference never had
    cur["vip"] = cur["vip"].astype(object)
    cur.loc[cur.index[:100], "vip"] = None
    result = run(ref, cur, thresholds)
    kinds = thresholds.set_index("column")["kind"]
    for row in result.columns.itertuples():
        assert row.score == pytest.approx(column_distance(ref[row.column], cur[row.column], kinds[row.column]), rel=TOL)
    assert (result.columns["score"] > 0).all()
    null_share = result.columns.set_index("column")["null_share"]
    assert null_share["x0"] == pytest.approx(9 / 900)  # infinities count as missing
    assert null_share["vip"] == pytest.approx(100 / 900)


def test_a_column_drifts_exactly_when_its_score_reaches_its_threshold(reference, thresholds):
    current = make_week(np.random.default_rng(18), WEEKS)
    first = run(reference, current, thresholds).columns.set_index("column")["score"]
    ratio = {"x0": 1.0, "x1": 1.2, "x2": 0.999, "tier": 1.0, "country": 0.999}  # score / threshold
    rigged = thresholds[thresholds["column"].isin(list(ratio))].copy()
    rigged["threshold"] = [first[c] / ratio[c] for c in rigged["column"]]
    result = run(reference, current, rigged)  # same data, same seed: the same scores
    assert result.columns.set_index("column")["score"].to_dict() == pytest.approx(first[list(ratio)].to_dict())
    assert sorted(drifted_columns(result)) == ["tier", "x0", "x1"]


def test_a_column_empty_in_the_current_frame_drifts(reference, thresholds):
    current = make_week(np.random.default_rng(12), WEEKS).assign(spend=np.nan)
    row = run(reference, current, thresholds).columns.set_index("column").loc["spend"]
    assert row["drifted"]
    assert row["score"] == np.inf
    assert row["null_share"] == 1.0


def test_save_writes_the_html_and_the_json(half_shifted, tmp_path):
    html, js = save(half_shifted, tmp_path / "drift", "week-7")
    assert html is not None and js is not None
    assert html.stat().st_size > 10_000
    assert "<html" in html.read_text(encoding="utf-8").lower()
    metrics = json.loads(js.read_text(encoding="utf-8"))["metrics"]
    scores = {m["config"]["column"]: m["value"] for m in metrics if "ValueDrift" in m["metric_name"]}
    assert scores == pytest.approx(
        dict(zip(half_shifted.columns["column"], half_shifted.columns["score"], strict=True))
    )
    assert sorted(p.name for p in (tmp_path / "drift").iterdir()) == ["week-7.html", "week-7.json"]  # no temp files


def test_nothing_to_test_gives_no_snapshot_and_no_files(reference, thresholds, tmp_path):
    only_skipped = thresholds[thresholds["column"].isin(SKIPPED)]
    result = detect(reference, make_week(np.random.default_rng(13), WEEKS), only_skipped, window=WINDOW)
    assert result.snapshot is None and result.skipped == SKIPPED and not result.drifted
    assert save(result, tmp_path, "none") == (None, None)
    assert list(tmp_path.iterdir()) == []


def test_prediction_drift_on_one_series(reference):
    rng = np.random.default_rng(14)
    weeks = reference["campaign_at"]
    same = distribution_drift(reference["x0"], pd.Series(rng.normal(0, 1, 3000)), reference_periods=weeks)
    moved = distribution_drift(reference["x0"], pd.Series(rng.normal(1, 1, 3000)), reference_periods=weeks)
    assert not same[2] and moved[2]
    assert same[1] == moved[1] >= 0.1
    assert moved[0] == pytest.approx(1.0, abs=0.1)
    assert distribution_drift(reference["x0"], pd.Series(rng.normal(1, 1, 3000)), threshold=2.0)[2] is False


def test_missing_columns_are_named(reference, thresholds):
    current = make_week(np.random.default_rng(15), WEEKS).drop(columns=["x1", "tier"])
    with pytest.raises(DriftError, match=r"current frame lacks column\(s\) \['x1', 'tier'\]; it has \['x0'"):
        detect(reference, current, thresholds)
    with pytest.raises(DriftError, match=r"reference frame lacks column\(s\) \['nope'\]"):
        calibrate(reference, ["x0", "nope"], "campaign_at")
    with pytest.raises(DriftError, match=r"lacks column\(s\) \['week'\]"):
        calibrate(reference, ["x0"], "week")


def test_bad_input_is_refused_before_any_work(reference, thresholds):
    with pytest.raises(DriftError, match="current frame is empty"):
        detect(reference, reference.iloc[:0], thresholds)
    with pytest.raises(DriftError, match="1 period"):
        calibrate(reference.iloc[:ROWS], ["x0"], "campaign_at")
    wrong_kind = make_week(np.random.default_rng(16), WEEKS).assign(visits="many")
    with pytest.raises(DriftError, match="'visits' is categorical in the current frame but numeric"):
        detect(reference, wrong_kind, thresholds)
