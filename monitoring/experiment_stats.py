"""The statistics of an experiment's report, with tea-tasting: per-variant rates and values with their
intervals, each treatment against the holdout and each baseline (CUPED where a pre-period covariate is
given), a sample-ratio check, a multiple-comparison correction, and the minimum detectable effect at the
current size. Pure: a frame of one row per player in, tables and plain sentences out.

- **Comparisons**: every treatment variant (the system's policy, a challenger) against every control
  variant present (the holdout, random assignment, the marketers' selection, the best single arm): the
  difference of means and the relative difference with their confidence intervals (Welch), and the
  p-value.
- **CUPED**: a metric with a pre-period covariate (the player's own value before the experiment) is
  compared on the covariate-adjusted means; the same metric is also reported unadjusted.
- **Multiple comparisons**: Holm's step-down over every comparison of the primary metrics (family-wise
  error at ``alpha``, whatever the dependence between them); a difference is called significant only when
  its adjusted p-value is under ``alpha``.
- **Sample ratio**: a chi-square test of the players per variant against the configured shares; a
  mismatch (p < 0.001) means the assignment or the exposure log is broken and the report says so first.
- **Power**: the relative effect each comparison could detect with 80% power at its current size, with and
  without CUPED, and the players it would need to detect ``target_effect``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats
import tea_tasting as tt
from tea_tasting.experiment import ExperimentResults

SRM_ALPHA = 0.001  # a sample-ratio p-value under this is a broken split, not bad luck


@dataclass(frozen=True)
class Metric:
    column: str  # per-player value
    label: str
    covariate: str | None = None  # the player's pre-period value of it (CUPED)
    primary: bool = False  # in the family corrected for multiple comparisons


@dataclass(frozen=True)
class Report:
    variants: pd.DataFrame  # per variant: players, shares, each metric's mean and interval
    comparisons: pd.DataFrame  # per (control, treatment, metric): effect, intervals, p-values, significant
    srm_pvalue: float
    power: pd.DataFrame  # per (control, treatment, metric): detectable relative effect, players needed
    sentences: list[str] = field(default_factory=list)

    @property
    def sample_ratio_ok(self) -> bool:
        return not self.srm_pvalue < SRM_ALPHA


def variant_summary(frame: pd.DataFrame, metrics: list[Metric], shares: dict[str, float], level: float) -> pd.DataFrame:
    """Players, expected and observed shares, and each metric's mean with its ``level`` interval (t)."""
    g = frame.groupby("variant")
    out = pd.DataFrame({"players": g.size()})
    out["share"] = out["players"] / out["players"].sum()
    out["expected_share"] = pd.Series(shares).reindex(out.index) / sum(shares[v] for v in out.index if v in shares)
    for m in metrics:
        n, mean, sd = g[m.column].count(), g[m.column].mean(), g[m.column].std(ddof=1)
        half = scipy.stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
        out[m.column], out[f"{m.column}_lower"], out[f"{m.column}_upper"] = mean, mean - half, mean + half
    return out.reset_index()


def sample_ratio_pvalue(frame: pd.DataFrame, shares: dict[str, float]) -> float:
    """The chi-square p-value of the players per variant of ``frame`` against the configured shares."""
    return counts_ratio_pvalue(frame["variant"].value_counts(), shares)


def counts_ratio_pvalue(counts: pd.Series, shares: dict[str, float]) -> float:
    """The chi-square p-value of players per variant (``counts``, indexed by variant) against the shares."""
    unknown = set(counts.index[counts > 0]) - set(shares)
    if unknown:
        raise ValueError(f"players in variants {sorted(unknown)} that the experiment does not have: {sorted(shares)}")
    observed = counts.reindex(list(shares), fill_value=0)
    weights = np.array([shares[v] for v in observed.index], dtype=float)
    expected = weights / weights.sum() * observed.sum()
    return float(scipy.stats.chisquare(observed.to_numpy(), expected).pvalue)


def _tea_metrics(metrics: list[Metric], level: float) -> dict[str, tt.Mean]:
    out: dict[str, tt.Mean] = {}
    for m in metrics:
        out[m.column] = tt.Mean(m.column, confidence_level=level)
        if m.covariate is not None:
            out[f"{m.column}_cuped"] = tt.Mean(m.column, m.covariate, confidence_level=level)
    return out


def analyse(
    frame: pd.DataFrame,
    shares: dict[str, float],
    *,
    treatments: list[str],
    controls: list[str],
    metrics: list[Metric],
    alpha: float = 0.05,
    target_effect: float = 0.15,
) -> Report:
    """The report of ``frame`` (columns ``variant`` and every metric's column and covariate; one row per
    player) for an experiment with these variant ``shares``."""
    missing = [c for m in metrics for c in (m.column, m.covariate) if c is not None and c not in frame]
    if missing:
        raise ValueError(f"the experiment's frame has no columns {missing}")
    data = frame[frame["variant"].notna()].copy()
    data["variant"] = data["variant"].astype(str)
    present = set(data["variant"])
    treat = [t for t in treatments if t in present]
    ctrl = [c for c in controls if c in present]
    level = 1 - alpha
    tea = _tea_metrics(metrics, level)
    experiment = tt.Experiment(tea)
    pairs: dict[tuple[str, str], object] = {}
    for c in ctrl:
        for t in treat:
            two = data[data["variant"].isin([c, t])]
            pairs[(c, t)] = experiment.analyze(two, control=c)
    results = ExperimentResults(pairs)
    primary = [name for m in metrics if m.primary for name in (f"{m.column}_cuped" if m.covariate else m.column,)]
    rows = []
    if pairs:
        adjusted = tt.adjust_fwer(results, metrics=primary, alpha=alpha, method="bonferroni", arbitrary_dependence=True)
        adj = {(r["comparison"], r["metric"]): r for r in adjusted.to_dicts()}
        for (c, t), result in pairs.items():
            for name, r in result.items():  # type: ignore[attr-defined]
                a = adj.get((str((c, t)), name))
                rows.append(
                    {
                        "control": c, "treatment": t, "metric": name, "control_mean": r.control,
                        "treatment_mean": r.treatment, "effect": r.effect_size, "effect_lower": r.effect_size_ci_lower,
                        "effect_upper": r.effect_size_ci_upper, "rel_effect": r.rel_effect_size,
                        "rel_lower": r.rel_effect_size_ci_lower, "rel_upper": r.rel_effect_size_ci_upper,
                        "pvalue": r.pvalue, "pvalue_adj": a["pvalue_adj"] if a else np.nan,
                        "primary": a is not None,
                        "significant": bool(a is not None and a["pvalue_adj"] < alpha),
                    }
                )  # fmt: skip
    comparisons = pd.DataFrame(rows)
    power = _power(data, pairs, metrics, alpha, target_effect)
    srm = sample_ratio_pvalue(data, shares)
    report = Report(variant_summary(data, metrics, shares, level), comparisons, srm, power)
    return Report(report.variants, comparisons, srm, power, _sentences(report, metrics, alpha))


def _power(data: pd.DataFrame, pairs: dict, metrics: list[Metric], alpha: float, target: float) -> pd.DataFrame:  # type: ignore[type-arg]
    rows = []
    for c, t in pairs:
        two = data[data["variant"].isin([c, t])]
        n_c, n_t = int((two["variant"] == c).sum()), int((two["variant"] == t).sum())
        if min(n_c, n_t) < 2:
            continue
        ratio = n_t / n_c
        for m in metrics:
            for name, cov in ((m.column, None), *(((f"{m.column}_cuped", m.covariate),) if m.covariate else ())):
                if two.loc[two["variant"] == c, m.column].std() == 0 or two[m.column].mean() == 0:
                    continue  # a control without variance (a holdout's reward cost): no relative effect to power
                at_size = tt.Mean(m.column, cov, n_obs=n_c + n_t, ratio=ratio, alpha=alpha, use_t=False)
                need = tt.Mean(m.column, cov, rel_effect_size=target, ratio=ratio, alpha=alpha, use_t=False)
                try:
                    mde = at_size.solve_power(two, "rel_effect_size")[0].rel_effect_size
                    players = int(np.ceil(need.solve_power(two, "n_obs")[0].n_obs))
                except (ValueError, ZeroDivisionError):  # degenerate data: no answer rather than a crash
                    continue
                rows.append(
                    {
                        "control": c,
                        "treatment": t,
                        "metric": name,
                        "players": n_c + n_t,
                        "detectable_rel_effect": mde,
                        "target_rel_effect": target,
                        "players_needed": players,
                    }
                )
    return pd.DataFrame(rows)


def _sentences(report: Report, metrics: list[Metric], alpha: float) -> list[str]:
    out = []
    if not report.sample_ratio_ok:
        out.append(
            f"SAMPLE RATIO MISMATCH (p = {report.srm_pvalue:.2g}): the players per variant do not match the "
            "configured shares; the assignment or the exposure log is broken and no comparison below can be trusted."
        )
    labels = {m.column: m.label for m in metrics} | {f"{m.column}_cuped": f"{m.label} (CUPED)" for m in metrics}
    for r in report.comparisons.to_dict("records"):
        if not r["primary"]:
            continue
        verdict = (
            f"significant at {alpha:g} after Holm's correction"
            if r["significant"]
            else "NOT significant after Holm's correction: this difference may be chance"
        )
        metric = str(r["metric"])
        rel = (
            f" ({r['rel_effect']:+.1%} [{r['rel_lower']:+.1%}, {r['rel_upper']:+.1%}])"
            if np.isfinite(r["rel_upper"]) and abs(r["rel_upper"]) < 10 and abs(r["rel_lower"]) < 10
            else ""  # a control mean near zero makes the relative interval meaningless
        )
        out.append(
            f"{r['treatment']} vs {r['control']}, {labels.get(metric, metric)}: {r['effect']:+,.4g} "
            f"[{r['effect_lower']:+,.4g}, {r['effect_upper']:+,.4g}]{rel}, p = {r['pvalue']:.3g} "
            f"(adjusted {r['pvalue_adj']:.3g}): {verdict}"
        )
    return out
