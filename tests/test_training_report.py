"""Training figures and the HTML report: every figure is a real PNG, bad input fails with
a message naming what is missing, empty input still draws, and the report is one
self-contained, escaped HTML file written atomically."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import plots
from training.report import Verdict, format_value, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEED = 11
ARMS = ("login 1,000", "deposit 5,000", "deposit 20,000")
HEADS = ("reengage", "deposits", "claim")
POLICIES = ("learned", "best single arm", "no offer")
ESTIMATORS = ("truth", "dr", "snips", "ips", "dm")
IMG_TAG = '<img src="data:image/png;base64,'


def uplift_curves(rng: np.random.Generator) -> pd.DataFrame:
    fraction = np.linspace(0, 1, 21)
    rows = []
    for arm in ARMS:
        total = rng.normal(50, 100)
        for source in ("truth", "estimated"):
            gain = total * fraction + 400 * fraction * (1 - fraction) + rng.normal(0, 10, len(fraction))
            rows.append(
                pd.DataFrame(
                    {
                        "arm": arm,
                        "source": source,
                        "fraction": fraction,
                        "cumulative_gain": gain,
                        "random": total * fraction,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def calibration_bins(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for quantity, scale in (("re-engagement", 0.3), ("deposits", 20_000.0), ("reward cost", 3_000.0)):
        predicted = np.sort(rng.uniform(0, scale, 10))
        rows.append(
            pd.DataFrame(
                {
                    "quantity": quantity,
                    "predicted": predicted,
                    "realised": predicted * rng.normal(1, 0.1, 10),
                    "n": rng.integers(50, 500, 10),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def roi_cells(rng: np.random.Generator) -> pd.DataFrame:
    cells = pd.MultiIndex.from_product([["whale", "casual", "new"], ARMS], names=["segment", "arm"]).to_frame(
        index=False
    )
    cells["n"] = rng.integers(100, 2_000, len(cells))
    cells["predicted"] = rng.normal(0, 800, len(cells))
    cells["actual"] = cells["predicted"] + rng.normal(0, 200, len(cells))
    return cells


def feature_importance(rng: np.random.Generator) -> pd.DataFrame:
    features = [f"feature_{i}" for i in range(30)]
    return pd.DataFrame([{"head": h, "feature": f, "gain": rng.exponential(100)} for h in HEADS for f in features])


def policy_values(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for policy in POLICIES:
        for estimator in ESTIMATORS:
            estimate = rng.normal(300, 200)
            bound = np.nan if estimator == "truth" else rng.uniform(50, 150)
            rows.append(
                {
                    "policy": policy,
                    "estimator": estimator,
                    "estimate": estimate,
                    "low": estimate - bound,
                    "high": estimate + bound,
                }
            )
    return pd.DataFrame(rows)


def reliability_table(rng: np.random.Generator) -> pd.DataFrame:
    low = np.linspace(0, 0.9, 10)
    confidence = low + 0.05
    return pd.DataFrame(
        {
            "bin_low": low,
            "bin_high": low + 0.1,
            "n": rng.integers(10, 300, 10),
            "mean_confidence": confidence,
            "share_right": np.clip(confidence + rng.normal(0, 0.05, 10), 0, 1),
        }
    )


PlotFunction = Callable[[pd.DataFrame, Path], Path]
CASES: dict[str, tuple[PlotFunction, Callable[[np.random.Generator], pd.DataFrame]]] = {
    "uplift": (plots.plot_uplift_curves, uplift_curves),
    "calibration": (plots.plot_calibration, calibration_bins),
    "roi_cells": (plots.plot_roi_cells, roi_cells),
    "importance": (plots.plot_feature_importance, feature_importance),
    "policy_values": (plots.plot_policy_values, policy_values),
    "reliability": (plots.plot_reliability, reliability_table),
}
COLUMN_CASES = [
    (name, column) for name, (_, make) in CASES.items() for column in make(np.random.default_rng(SEED)).columns
]


@pytest.fixture(autouse=True)
def mpl_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib keeps its config and font cache in a throw-away folder (shared by the tests)."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > len(PNG_SIGNATURE) and path.read_bytes()[:8] == PNG_SIGNATURE


def open_figures() -> list[int]:
    import matplotlib.pyplot as plt

    return plt.get_fignums()


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_plot_writes_a_png_and_closes_its_figure(name: str, rng: np.random.Generator, tmp_path: Path) -> None:
    plot, make = CASES[name]
    path = tmp_path / "figures" / f"{name}.png"  # the folder does not exist yet
    assert plot(make(rng), path) == path
    assert is_png(path)
    assert open_figures() == []


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_plot_of_an_empty_frame_draws_a_png(name: str, rng: np.random.Generator, tmp_path: Path) -> None:
    plot, make = CASES[name]
    path = plot(make(rng).iloc[0:0], tmp_path / f"{name}.png")
    assert is_png(path)
    assert open_figures() == []


@pytest.mark.parametrize(("name", "column"), COLUMN_CASES, ids=[f"{n}-{c}" for n, c in COLUMN_CASES])
def test_plot_names_a_missing_column(name: str, column: str, rng: np.random.Generator, tmp_path: Path) -> None:
    plot, make = CASES[name]
    path = tmp_path / "never.png"
    with pytest.raises(ValueError, match=rf"lacks column.*'{re.escape(column)}'"):
        plot(make(rng).drop(columns=[column]), path)
    assert not path.exists()


def test_roi_cells_accept_the_accuracy_for_the_title(rng: np.random.Generator, tmp_path: Path) -> None:
    assert is_png(plots.plot_roi_cells(roi_cells(rng), tmp_path / "roi.png", accuracy=0.87))


def test_feature_importance_with_fewer_features_than_top(rng: np.random.Generator, tmp_path: Path) -> None:
    few = feature_importance(rng).groupby("head").head(3)
    assert is_png(plots.plot_feature_importance(few, tmp_path / "few.png", top=20))


@pytest.mark.parametrize(
    ("plot", "frame", "message"),
    [
        (plots.plot_uplift_curves, uplift_curves, r"unknown source.*'oracle'"),
        (plots.plot_policy_values, policy_values, r"unknown estimator.*'oracle'"),
    ],
    ids=["uplift-source", "policy-estimator"],
)
def test_plot_names_an_unknown_category(plot, frame, message: str, rng: np.random.Generator, tmp_path: Path) -> None:
    data = frame(rng)
    column = "source" if "source" in data else "estimator"
    data.loc[0, column] = "oracle"
    with pytest.raises(ValueError, match=message):
        plot(data, tmp_path / "never.png")


def test_feature_importance_rejects_a_top_below_one(rng: np.random.Generator, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"top must be >= 1.*got 0"):
        plots.plot_feature_importance(feature_importance(rng), tmp_path / "never.png", top=0)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12_345.678, "12,346"),
        (-250.0, "-250"),
        (0.87654, "0.877"),
        (12.3456, "12.3"),
        (np.float64(0.5), "0.5"),
        (None, "\u2014"),
        (float("nan"), "\u2014"),
        (7, "7"),
        ("text", "text"),
    ],
    ids=["thousands", "negative-hundreds", "fraction", "tens", "numpy", "none", "nan", "int", "str"],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


@pytest.fixture
def figure_png(rng: np.random.Generator, tmp_path: Path) -> Path:
    return plots.plot_reliability(reliability_table(rng), tmp_path / "figures" / "reliability.png")


def test_report_is_one_escaped_self_contained_html_file(figure_png: Path, tmp_path: Path) -> None:
    cells = pd.DataFrame(
        {"segment": ["whale", "<script>alert(1)</script>"], "value": [12_345.678, 0.87654], "note": [None, "ok"]}
    )
    arms = pd.DataFrame({"arm": ["login 1,000"], "share": [0.25]})
    out = tmp_path / "out" / "nested"  # does not exist yet
    path = write_report(
        out / "report.html",
        title="Run 42 & friends",
        summary={"ROI accuracy": 0.8734, "candidates": 123_456.0, "budget": None},
        tables={"ROI cells": cells, "Arms <all>": arms},
        figures={"Reliability": figure_png, "Reliability again": figure_png},
        notes=["estimates are <b>per candidate</b>"],
        verdict=Verdict("Not promoted: <fall back>", False, ("gap -12 [-40, +9]",)),
        warnings=["thin <support>"],
        details={"Calibration bins": arms},
    )
    assert path == out / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "<h1>Run 42 &amp; friends</h1>" in page
    reading_order = (
        "Verdict", "ROI cells", "Arms <all>", "Warnings", "Reliability", "Reliability again", "Calibration bins",
        "Notes", "All metrics",
    )  # fmt: skip
    where = [page.find(f"<h2>{html.escape(heading)}</h2>") for heading in reading_order]
    assert min(where) > 0 and where == sorted(where), dict(zip(reading_order, where, strict=True))
    assert '<div class="verdict fail"><p class="headline">Not promoted: &lt;fall back&gt;</p>' in page
    assert "<p>gap -12 [-40, +9]</p>" in page and "<li>thin &lt;support&gt;</li>" in page
    assert "<td>whale</td>" in page and "12,346" in page and "0.877" in page
    assert "<td>0.873</td>" in page and "123,456" in page and "\u2014" in page
    assert page.count(IMG_TAG) == 2
    assert "None" not in page  # a missing cell shows as an em dash
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page and "<li>estimates are &lt;b&gt;per candidate&lt;/b&gt;</li>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no temporary file left


def test_report_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old", encoding="utf-8")
    write_report(path, title="new", summary={}, tables={}, figures={})
    assert "<h1>new</h1>" in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_rejects_a_figure_that_is_not_a_png(tmp_path: Path) -> None:
    fake = tmp_path / "figure.png"
    fake.write_text("<svg/>", encoding="utf-8")
    with pytest.raises(ValueError, match=r"'broken'.*not a PNG"):
        write_report(tmp_path / "out" / "report.html", title="t", summary={}, tables={}, figures={"broken": fake})
    assert not (tmp_path / "out" / "report.html").exists()
