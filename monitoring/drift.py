"""Data drift between a reference frame and a current frame, on thresholds calibrated from the reference.

Evidently's default drift tests flag almost every column on large samples and flag noise on tiny windows.
Here both frames are compared on fixed-size windows (``window`` rows sampled with a fixed seed), each column
with a distance (normed Wasserstein for numeric columns, Jensen-Shannon for categorical ones), against a
threshold learnt from the reference itself: the reference is split into its time periods and the same
distance is measured between every pair of periods; a column's threshold is ``factor`` times the largest of
those distances, never below a floor. Natural week-to-week change then stays quiet and a real shift alarms.

:func:`calibrate` computes the between-period distances with scipy, using Evidently's own formulas
(``evidently.legacy.calculations.stattests``): the tests check that both give the same numbers.
:func:`detect` runs one Evidently report (a ``ValueDrift`` per column and a ``DriftedColumnsCount``) on the
two windows, for the scores and for the HTML/JSON that :func:`save` writes. Evidently is imported lazily: it
takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = "numeric", "categorical"
METHODS = {NUMERIC: "wasserstein", CATEGORICAL: "jensenshannon"}  # Evidently's names
MAX_PERIODS = 12  # more distinct times than this in the reference are grouped into PERIOD_GROUPS
PERIOD_GROUPS = 6
THRESHOLD_COLUMNS = ["column", "kind", "method", "threshold", "null_max", "period_max"]


class DriftError(ValueError):
    """Bad input to the drift check: a missing column, an empty frame, an unusable time split."""


@dataclass(frozen=True)
class DriftResult:
    columns: pd.DataFrame  # one row per tested column: column, kind, method, score, threshold, drifted, null_share
    share: float  # share of the tested columns that drifted
    drifted: bool  # share > share_threshold
    skipped: list[str]  # constant or all-missing in the reference window
    snapshot: Any  # the Evidently snapshot (save_html/save_json); None when no column could be tested
    share_threshold: float = 0.3

    def summary(self, top: int = 5) -> str:
        """One line, e.g. ``3 of 40 features drifted (7.5%; alarm above 30%): a, b, c``, the top by score/threshold."""
        hit = self.columns[self.columns["drifted"]]
        ranked = hit.assign(ratio=hit["score"] / hit["threshold"]).sort_values("ratio", ascending=False)
        names = list(ranked["column"].head(top)) + (["..."] if len(ranked) > top else [])
        line = (
            f"{len(hit)} of {len(self.columns)} features drifted "
            f"({self.share:.1%}; alarm above {self.share_threshold:.0%})"
        )
        return line + (f": {', '.join(names)}" if names else "")


def column_kind(series: pd.Series) -> str:
    """``categorical`` for bool, object, string and category columns, ``numeric`` for the other numbers."""
    dtype = series.dtype
    if (
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC
    raise DriftError(f"column {series.name!r} has dtype {dtype}; expected a number, bool, string or category")


def column_distance(reference: pd.Series, current: pd.Series, kind: str) -> float:
    """Evidently's distance between two samples, missing and infinite values dropped (NaN when one is empty).

    ``numeric``: Wasserstein distance over the reference's standard deviation (at least 0.001);
    ``categorical``: Jensen-Shannon distance (natural log) between the category frequencies.
    """
    ref, cur = _clean(reference, kind), _clean(current, kind)
    if ref.empty or cur.empty:
        return float("nan")
    if kind == NUMERIC:
        from scipy.stats import wasserstein_distance

        return float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))
    from scipy.spatial.distance import jensenshannon

    freq = pd.concat([ref.value_counts(), cur.value_counts()], axis=1, sort=False).fillna(0.0).to_numpy(float)
    return float(jensenshannon(freq[:, 0] / freq[:, 0].sum(), freq[:, 1] / freq[:, 1].sum()))


def _clean(series: pd.Series, kind: str) -> pd.Series:
    values = _as_kind(series, kind)
    return values[np.isfinite(values)] if kind == NUMERIC else values.dropna()


def _as_kind(series: pd.Series, kind: str) -> pd.Series:
    """Plain float64 (infinities as missing, as Evidently drops them) or plain object values."""
    if kind == NUMERIC:
        values = series.to_numpy(dtype=float, na_value=np.nan)
        return pd.Series(np.where(np.isinf(values), np.nan, values), index=series.index, name=series.name)
    return series.astype(object)


def _window(frame: pd.DataFrame, window: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= window:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), size=window, replace=False))]


def _check_columns(frame: pd.DataFrame, columns: list[str], which: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DriftError(f"{which} frame lacks column(s) {missing}; it has {list(frame.columns)}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise DriftError(f"{name} must be positive, got {value!r}")


def periods(times: pd.Series) -> list[np.ndarray]:
    """Row positions of each reference period: one per distinct time, or with more than ``MAX_PERIODS``
    distinct times, ``PERIOD_GROUPS`` contiguous groups of about equal rows (a time never split)."""
    known = times.notna().to_numpy()
    counts = times[known].value_counts().sort_index()
    counts = counts[counts > 0]  # a categorical time column lists unused categories
    if len(counts) <= MAX_PERIODS:
        group = pd.Series(np.arange(len(counts)), index=counts.index)
    else:
        before = counts.cumsum().to_numpy() - counts.to_numpy()
        group = pd.Series(before * PERIOD_GROUPS // counts.sum(), index=counts.index)
    labels = np.full(len(times), -1)
    labels[known] = times[known].map(group).to_numpy()
    return [np.flatnonzero(labels == g) for g in np.unique(group.to_numpy())]


def _period_max(column: pd.Series, shuffled: list[np.ndarray], kind: str, window: int) -> float:
    """Largest distance between any two periods' windows (the earlier period as reference), 0 if none."""
    largest = 0.0
    for a, b in combinations(shuffled, 2):
        n = min(window, len(a), len(b))
        d = column_distance(column.iloc[a[:n]], column.iloc[b[:n]], kind)
        if np.isfinite(d):
            largest = max(largest, d)
    return largest


def calibrate(
    reference: pd.DataFrame,
    columns: list[str],
    time_column: str,
    *,
    window: int = 5000,
    factor: float = 2.0,
    floor_wasserstein: float = 0.1,
    floor_jensenshannon: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Per column: kind, method and threshold = max(floor, ``factor`` x the largest distance between two
    reference periods' windows of up to ``window`` rows); ``null_max`` is the largest missing share of any
    period and ``period_max`` the largest between-period distance. Constant or all-missing columns get a
    NaN threshold (:func:`detect` skips them)."""
    _check_columns(reference, [*columns, time_column], "reference")
    _check_positive(window=window, factor=factor)
    parts = periods(reference[time_column])
    if len(parts) < 2:
        raise DriftError(f"reference has {len(parts)} period(s) in {time_column!r}; calibration compares at least 2")
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(p) for p in parts]  # a prefix of a permutation is a uniform sample
    floors = {NUMERIC: floor_wasserstein, CATEGORICAL: floor_jensenshannon}
    rows = []
    for name in columns:
        kind = column_kind(reference[name])
        values = _as_kind(reference[name], kind)
        null_max = max(float(values.iloc[p].isna().mean()) for p in parts)
        if values.nunique(dropna=True) <= 1:
            rows.append((name, kind, METHODS[kind], np.nan, null_max, np.nan))
            continue
        largest = _period_max(values, shuffled, kind, window)
        rows.append((name, kind, METHODS[kind], max(floors[kind], factor * largest), null_max, largest))
    return pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)


def detect(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: pd.DataFrame,
    *,
    window: int = 5000,
    share: float = 0.3,
    seed: int = 0,
) -> DriftResult:
    """Compare a ``window``-row sample of ``current`` with one of ``reference`` on the calibrated columns.

    A column drifts when its score reaches its threshold (Evidently's rule: score >= threshold); a column
    with no value in the current window drifts with an infinite score. The dataset drifts when the share of
    drifted columns exceeds ``share``."""
    _check_columns(thresholds, THRESHOLD_COLUMNS[:4], "thresholds")
    columns = list(thresholds["column"])
    _check_columns(reference, columns, "reference")
    _check_columns(current, columns, "current")
    if current.empty:
        raise DriftError("current frame is empty: there is nothing to compare with the reference")
    if reference.empty:
        raise DriftError("reference frame is empty: there is nothing to compare the current frame with")
    _check_positive(window=window)
    if not 0 <= share < 1:
        raise DriftError(f"share must be in [0, 1), got {share!r}")
    repeated = sorted(set(thresholds["column"][thresholds["column"].duplicated()]))
    if repeated:
        raise DriftError(f"thresholds name column(s) {repeated} more than once")
    unknown = sorted(set(thresholds["method"]) - set(METHODS.values()))
    if unknown:
        raise DriftError(f"thresholds name unknown method(s) {unknown}; expected {sorted(METHODS.values())}")

    rng = np.random.default_rng(seed)
    ref_window, cur_window = _window(reference[columns], window, rng), _window(current[columns], window, rng)
    kinds = dict(zip(columns, thresholds["kind"].astype(str), strict=True))
    methods = dict(zip(columns, thresholds["method"].astype(str), strict=True))
    limits = dict(zip(columns, thresholds["threshold"].astype(float), strict=True))
    ref_values: dict[str, pd.Series] = {}
    cur_values: dict[str, pd.Series] = {}
    skipped, empty = [], []
    for name in columns:
        if current[name].notna().any() and column_kind(current[name]) != kinds[name]:
            found = column_kind(current[name])
            raise DriftError(f"column {name!r} is {found} in the current frame but {kinds[name]} in the thresholds")
        ref, cur = _as_kind(ref_window[name], kinds[name]), _as_kind(cur_window[name], kinds[name])
        if not np.isfinite(limits[name]) or ref.nunique(dropna=True) <= 1:
            skipped.append(name)
        elif cur.isna().all():
            empty.append(name)
        else:
            ref_values[name], cur_values[name] = ref, cur

    scores = {name: float("inf") for name in empty}
    snapshot = None
    if ref_values:
        tested_now = list(ref_values)
        snapshot = _evidently_report(
            pd.DataFrame(ref_values),
            pd.DataFrame(cur_values),
            {n: kinds[n] for n in tested_now},
            {n: methods[n] for n in tested_now},
            {n: limits[n] for n in tested_now},
            share,
        )
        scores |= _value_drift_scores(snapshot)
    tested = [name for name in columns if name in scores]
    table = pd.DataFrame(
        {
            "column": tested,
            "kind": [kinds[n] for n in tested],
            "method": [methods[n] for n in tested],
            "score": [scores[n] for n in tested],
            "threshold": [limits[n] for n in tested],
            "null_share": [float(_as_kind(cur_window[n], kinds[n]).isna().mean()) for n in tested],
        }
    )
    table.insert(5, "drifted", table["score"] >= table["threshold"])
    drifted_share = float(table["drifted"].mean()) if tested else 0.0
    return DriftResult(table, drifted_share, drifted_share > share, skipped, snapshot, share)


def _evidently_report(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    kinds: dict[str, str],
    methods: dict[str, str],
    limits: dict[str, float],
    share: float,
) -> Any:
    """One report: a ``ValueDrift`` per column (its method and threshold) and their ``DriftedColumnsCount``."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    names = list(ref.columns)
    definition = DataDefinition(
        numerical_columns=[n for n in names if kinds[n] == NUMERIC],
        categorical_columns=[n for n in names if kinds[n] == CATEGORICAL],
    )
    metrics: list[Any] = [ValueDrift(column=n, method=methods[n], threshold=limits[n]) for n in names]
    metrics.append(
        DriftedColumnsCount(columns=names, per_column_method=methods, per_column_threshold=limits, drift_share=share)
    )
    with warnings.catch_warnings():  # pandas' downcasting notice on Evidently's own replace() of object columns
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"evidently\.")
        return Report(metrics).run(
            Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition)
        )


def _value_drift_scores(snapshot: Any) -> dict[str, float]:
    """Each ``ValueDrift`` metric's score from the snapshot's dict, by column."""
    return {
        m["config"]["column"]: float(m["value"])
        for m in snapshot.dict()["metrics"]
        if m.get("config", {}).get("type") == "evidently:metric_v2:ValueDrift"
    }


def distribution_drift(
    reference: pd.Series,
    current: pd.Series,
    *,
    threshold: float | None = None,
    reference_periods: pd.Series | None = None,
    window: int = 5000,
    factor: float = 2.0,
    floor: float = 0.1,
    seed: int = 0,
) -> tuple[float, float, bool]:
    """Drift of one numeric series (e.g. the model's predictions), without Evidently: (score, threshold,
    drifted). Give the ``threshold``, or ``reference_periods`` (the period of each reference row) to
    calibrate it as :func:`calibrate` does."""
    if column_kind(reference) != NUMERIC:
        raise DriftError(f"distribution_drift takes a numeric series, got dtype {reference.dtype}")
    if threshold is None:
        if reference_periods is None:
            raise DriftError("distribution_drift needs a threshold or the reference_periods to calibrate one")
        frame = pd.DataFrame({"value": reference.to_numpy(), "period": reference_periods.to_numpy()})
        spec = calibrate(frame, ["value"], "period", window=window, factor=factor, floor_wasserstein=floor, seed=seed)
        threshold = float(spec["threshold"].iloc[0])
        if not np.isfinite(threshold):
            raise DriftError("reference series is constant or empty: its drift cannot be measured")
    if current.dropna().empty:
        raise DriftError("current series has no value: there is nothing to compare with the reference")
    rng = np.random.default_rng(seed)
    ref = _window(reference.to_frame("value"), window, rng)["value"]
    score = column_distance(ref, _window(current.to_frame("value"), window, rng)["value"], NUMERIC)
    return score, threshold, bool(score >= threshold)


def save(result: DriftResult, directory: Path, stem: str) -> tuple[Path | None, Path | None]:
    """Write ``stem.html`` and ``stem.json`` (Evidently's report) into ``directory``, each atomically;
    (None, None) when no column could be tested."""
    if result.snapshot is None:
        return None, None
    directory.mkdir(parents=True, exist_ok=True)
    html, json_ = directory / f"{stem}.html", directory / f"{stem}.json"
    # Evidently's save_* write nothing when given a Path or a file object: they act on a str only
    _write_atomically(html, result.snapshot.save_html)
    _write_atomically(json_, result.snapshot.save_json)
    return html, json_


def _write_atomically(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if os.path.getsize(tmp) == 0:
            raise OSError(f"Evidently wrote nothing to {tmp}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
