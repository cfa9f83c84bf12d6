"""How well can a policy be proven, and a rule be chosen, from a history this size, even with the best
evidence it could hold?

    .venv/bin/python -m experiments.selection_bound --home W/loop1 [--config DIR] [--multiples 1,3,10,30,100]
        [--shortlist N | --top N] [--plot guard-power.png]

Issue 12, section 3 asks for a deployed policy worth at least 1.05x the truly best single arm on 20,000-player
worlds. The truth's own segment rule is worth 1.1x to 1.25x there, so the headroom exists; the questions are
whether the data can prove it and find it (docs/training.md, "Session of 2026-12-06, afternoon").

Proving: the last lines print the floor of the standard error of any comparison of two policies on the
held-out rows (and on every row): an on-policy A/B test, half the rows decided by each, every outcome
adjusted by the player's exact expectation, so that only the outcomes' own noise is left (``2 sd / sqrt(rows)``,
``sd`` that of the held-out rows' realised net value around the truth's expectation); and the chance that the
guard's one-sided 5% test finds a policy 5% to 25% better than the best single arm. ``--plot`` draws that
chance against the true gain, at 1x to 30x the rows.

Finding, for segment rules, under assumptions kinder than any real history:

- every decision of the history (all of its rows, any campaign) was an experiment with the arms drawn
  uniformly (``rows / arms`` rows per segment and arm; ``--top N``: only an oracle's N best arms tried);
- the estimate of each (segment, arm) cell is as good as a regression adjustment with the simulator's exact
  expectations as covariates: the player-to-player spread of values and of effects costs nothing;
- what is left is what no estimate can remove: how far a realised 7-day net value falls from its expectation
  for that player and arm (the residuals of the history's own rows, per segment and arm).

Each (segment, arm) estimate is then the truth of that cell plus normal noise of that size, drawn ``--draws``
times; the single arm (pooled over segments) and the segment rule (no offer where no arm gains) are chosen on
the estimates, and also the guarded rule the product would deploy: the segment rule only where its estimated
gain over the chosen single arm clears 1.645 standard errors. Each choice is worth the truth of the held-out
campaigns' rows (the judged slice), as a ratio to the truly best single arm there. ``--multiples`` scales the
rows, to show how much more data the target needs; ``--shortlist N`` lets each segment choose only among the
N arms best by the pooled estimate.

Nothing here fits a model: a per-player model can pool evidence across arms and segments, which this bound
does not credit, but the model-based candidates on the same worlds (``experiments.policy_candidates``, and on
the ``rct`` world, where every campaign is randomised) are measured beside it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

from core.config import ConfigError, load_config
from training.data import TrainingDataError
from training.fit import prepare
from training.propensity import logged_arm_index
from training.truth import ArmTruth, TruthError, decision_truth

Z_GUARD = 1.645
TARGET = 1.05


@dataclass(frozen=True)
class Cells:
    """Per (segment, arm) of the history: the true mean incremental net value, the variance of one row's
    realised net value around its expectation (the residual), and the segment's rows; and per
    segment and arm on the held-out rows, the truth a rule is worth there, with the segment's share."""

    segments: list[str]
    effect: np.ndarray  # segments x arms (column 0: no offer, 0)
    row_var: np.ndarray  # segments x arms
    rows: np.ndarray  # per segment
    held_out: np.ndarray  # segments x arms: mean true incremental net value on the held-out rows
    held_out_share: np.ndarray  # per segment
    held_out_rows: int = 0
    held_out_residual_sd: float = 0.0  # of a held-out row's realised net value around its expectation

    def held_out_values(self) -> np.ndarray:
        """Each arm's true value for everyone on the held-out rows (-inf for an arm a segment there lacks)."""
        valued = self.held_out_share > 0
        held = np.where(valued[:, None], np.nan_to_num(self.held_out, nan=-np.inf), 0.0)
        return (self.held_out_share[:, None] * held).sum(axis=0)

    def best_single_value(self) -> float:
        """The truly best single arm's value on the held-out rows."""
        return float(self.held_out_values()[1:].max())

    def segment_rule_value(self) -> float:
        """The truth's own segment rule's value on the held-out rows (no offer where no arm gains)."""
        held = np.nan_to_num(self.held_out, nan=-np.inf).max(axis=1).clip(min=0.0)
        return float((self.held_out_share * np.where(self.held_out_share > 0, held, 0.0)).sum())


def cells(
    segment: np.ndarray,
    arm: np.ndarray,
    realised: np.ndarray,
    truth_net: np.ndarray,
    test: np.ndarray,
) -> Cells:
    """From every row's segment, logged arm (-1: not an arm of the table), realised net value, the truth's
    expected net value of every arm (rows x arms, column 0 no offer; NaN where unknown) and which rows are
    held out."""
    known = ~np.isnan(truth_net).all(axis=1)
    segment, arm, realised, truth_net, test = (x[known] for x in (segment, arm, realised, truth_net, test))
    inc = truth_net - truth_net[:, [0]]
    names = sorted(set(segment.tolist()))
    k = truth_net.shape[1]
    effect = np.zeros((len(names), k))
    row_var = np.zeros((len(names), k))
    rows = np.zeros(len(names))
    held = np.full((len(names), k), np.nan)
    share = np.zeros(len(names))
    logged = arm >= 0
    idx = np.flatnonzero(logged)
    residual = np.full(len(arm), np.nan)
    residual[idx] = realised[idx] - truth_net[idx, arm[idx]]
    pooled = np.nanvar(residual)
    for s, name in enumerate(names):
        mine = segment == name
        rows[s] = mine.sum()
        effect[s] = np.nan_to_num(np.nanmean(inc[mine], axis=0), nan=-np.inf)
        effect[s, 0] = 0.0
        res = pd.Series(residual[mine]).groupby(arm[mine]).agg(["var", "size"])
        per_arm = np.full(k, np.nanvar(residual[mine]) if np.isfinite(residual[mine]).sum() > 30 else pooled)
        enough = res[(res["size"] >= 30) & (res.index >= 0)]
        per_arm[enough.index.to_numpy(int)] = enough["var"].to_numpy()
        row_var[s] = per_arm
        if (mine & test).any():
            held[s] = np.nanmean(inc[mine & test], axis=0)
            share[s] = (mine & test).sum()
    return Cells(
        names, effect, row_var, rows, held, share / share.sum(), int(test.sum()), float(np.nanstd(residual[test]))
    )


def ab_test_power(c: Cells, gains: list[float], rows: int) -> tuple[float, list[float]]:
    """The floor of the standard error of the difference between two policies' values measured on ``rows``
    rows, half decided by each (an A/B test, on-policy: no weights), with the outcomes adjusted by each player's
    exact expectation so that only the outcomes' own noise is left: ``2 sd / sqrt(rows)``. And, for each gain
    (a ratio to the best single arm: 1.05 is 5% better), the chance that the guard's one-sided test (its 90%
    interval above zero) finds a policy that good better. No estimate on those rows does better than this."""
    se = 2.0 * c.held_out_residual_sd / np.sqrt(rows)
    best = c.best_single_value()
    return se, [float(ndtr((g - 1.0) * best / se - Z_GUARD)) for g in gains]


@dataclass(frozen=True)
class Choices:
    """Per draw, the ratio to the truly best single arm of each chosen rule, and whether the single arm chosen
    was the truly best one."""

    single: np.ndarray
    segment_rule: np.ndarray
    guarded: np.ndarray
    right_single: np.ndarray


def tried_arms(c: Cells, top: int | None) -> np.ndarray:
    """The offer arms the experiment tries (a mask over the arms; no offer is never tried, it is known): all, or
    the ``top`` truly best single arms of the history, as if an oracle had named them."""
    k = c.effect.shape[1]
    tried = np.ones(k, bool)
    tried[0] = False
    if top is not None and top < k - 1:
        weight = c.rows / c.rows.sum()
        overall = (weight[:, None] * np.where(np.isfinite(c.effect), c.effect, 0.0)).sum(axis=0)
        tried[:] = False
        tried[1 + np.argsort(-overall[1:])[:top]] = True
    return tried


def choose_rules(
    c: Cells,
    multiple: float,
    draws: int,
    rng: np.random.Generator,
    top: int | None = None,
    shortlist: int | None = None,
) -> Choices:
    """Draw the estimates of a history ``multiple`` times this size (inf: no noise) in which every segment's
    rows were split evenly over the tried offer arms (:func:`tried_arms`), and value each choice. With
    ``shortlist``, each segment chooses only among the ``shortlist`` arms best on the pooled estimates (the
    same draw's): the data, not an oracle, names the candidates."""
    tried = tried_arms(c, top)
    n_cell = c.rows * multiple / tried.sum()
    se = np.sqrt(c.row_var / n_cell[:, None]) if np.isfinite(multiple) else np.zeros_like(c.row_var)
    est = c.effect[None] + se[None] * rng.standard_normal((draws, *c.effect.shape))
    est[..., ~tried] = -np.inf
    est[..., 0] = 0.0  # the no-offer baseline is known exactly (the oracle adjustment)
    se[:, 0] = 0.0
    weight = c.rows / c.rows.sum()
    pooled = np.einsum("s,dsa->da", weight, np.where(np.isfinite(est), est, 0.0))
    single = pooled[:, 1:].argmax(axis=1) + 1
    if shortlist is not None:
        rank = np.argsort(np.argsort(-pooled[:, 1:], axis=1), axis=1)  # 0: the best offer arm of the draw
        est = est.copy()
        est[..., 1:] = np.where((rank < shortlist)[:, None, :], est[..., 1:], -np.inf)
    rule = est[..., 1:].argmax(axis=2) + 1
    rule = np.where(np.take_along_axis(est, rule[..., None], axis=2)[..., 0] > 0, rule, 0)
    # the guard: the segment rule's estimated gain over the single arm, and its standard error
    d = np.arange(draws)[:, None]
    s = np.arange(len(c.segments))[None, :]
    gain = (weight * (est[d, s, rule] - est[d, s, single[:, None]])).sum(axis=1)
    var_rule = se[s, rule] ** 2
    var_single = se[s, single[:, None]] ** 2
    same = rule == single[:, None]
    gain_se = np.sqrt((weight**2 * np.where(same, 0.0, var_rule + var_single)).sum(axis=1))
    take_rule = gain > Z_GUARD * gain_se

    held = np.nan_to_num(c.held_out, nan=-np.inf)
    valued = c.held_out_share > 0
    w = np.where(valued, c.held_out_share, 0.0)
    single_truth = c.held_out_values()
    best = single_truth[1:].max()
    worth_single = single_truth[single] / best
    worth_rule = (w * np.where(valued, held[s[0], rule], 0.0)).sum(axis=1) / best
    return Choices(
        worth_single,
        worth_rule,
        np.where(take_rule, worth_rule, worth_single),
        single == int(single_truth[1:].argmax()) + 1,
    )


def plot_power(c: Cells, path: Path, title: str) -> Path:
    """The chance that the guard's test proves a policy better than the best single arm, against how much
    better it truly is, for the held-out rows at the A/B test's floor and for 3x to 30x as many rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains = list(np.linspace(1.0, 1.4, 81))
    fig, ax = plt.subplots(figsize=(8, 5))
    for multiple, color in ((1, "#e76f51"), (3, "#f4a261"), (10, "#2a9d8f"), (30, "#264653")):
        rows = int(c.held_out_rows * multiple)
        _, power = ab_test_power(c, gains, rows)
        label = f"{multiple}x the held-out rows ({rows:,})" if multiple > 1 else f"the held-out rows ({rows:,})"
        ax.plot(gains, power, color=color, lw=2, label=label)
    ax.axhline(0.8, color="grey", ls=":", lw=1)
    ax.axvline(
        c.segment_rule_value() / c.best_single_value(),
        color="#2a9d8f",
        ls="-.",
        lw=1.5,
        label="the truth's own segment rule",
    )
    ax.axvline(TARGET, color="black", ls="--", lw=1, label=f"the issue's target, {TARGET}x")
    ax.set_xlabel("the policy's true value / the best single arm's")
    ax.set_ylabel("chance the guard proves it better (one-sided 5%)")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def history_cells(home: Path, config: Path | None) -> Cells:
    cfg = load_config(config, home=home)
    prepared = prepare(cfg)
    frame, arms = prepared.frame, prepared.arms
    truth: ArmTruth = decision_truth(home / "truth", frame, arms)
    test_start = pd.Timestamp(prepared.split.test_start)
    return cells(
        frame["segment"].astype(str).to_numpy(),
        logged_arm_index(frame, arms),
        frame["net_value"].to_numpy(np.float64),
        prepared.cfg.business.margin * truth.deposits - truth.cost,
        (pd.to_datetime(frame["campaign_at"]) >= test_start).to_numpy(),
    )


def summary(
    c: Cells, multiples: list[float], draws: int, seed: int, top: int | None = None, shortlist: int | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    for m in multiples:
        ch = choose_rules(c, m, draws, rng, top, shortlist)
        out.append(
            {
                "rows": "inf" if not np.isfinite(m) else f"{m:g}x ({int(c.rows.sum() * m):,})",
                "single arm: right": ch.right_single.mean(),
                "single arm: mean": ch.single.mean(),
                "segment rule: mean": ch.segment_rule.mean(),
                f"segment rule: >= {TARGET}x": (ch.segment_rule >= TARGET).mean(),
                "segment rule: < 1x": (ch.segment_rule < 1.0 - 1e-9).mean(),
                "guarded: mean": ch.guarded.mean(),
                f"guarded: >= {TARGET}x": (ch.guarded >= TARGET).mean(),
                "guarded: < 1x": (ch.guarded < 1.0 - 1e-9).mean(),
            }
        )
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True, help="a world built by `rekindle run` (with its truth)")
    ap.add_argument("--config", type=Path, help="its configuration directory (default ./configs)")
    ap.add_argument("--multiples", default="1,3,10,30,100,inf", help="history sizes, as multiples of this one's")
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, help="try only the N truly best single arms (default: every arm)")
    ap.add_argument("--shortlist", type=int, help="segments choose among the N best arms by the pooled estimate")
    ap.add_argument("--plot", type=Path, help="draw the guard's chance against the true gain to this PNG")
    args = ap.parse_args()
    try:
        multiples = [float(m) for m in args.multiples.split(",")]
    except ValueError:
        multiples = []
    if not multiples or min(multiples) <= 0:
        ap.error(f"--multiples {args.multiples!r}: expected positive numbers separated by commas, e.g. 1,3,10,inf")
    for name in ("draws", "top", "shortlist"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} {value}: expected a whole number of 1 or more")
    try:
        c = history_cells(args.home, args.config)
    except (ConfigError, TrainingDataError, TruthError) as exc:
        ap.error(str(exc))
    print(
        f"{args.home}: {int(c.rows.sum()):,} decision rows in {len(c.segments)} segments x {c.effect.shape[1]} arms; "
        f"a row's outcome spread around its expectation: s.d. {np.sqrt(np.median(c.row_var[:, 1:])):,.0f} KRW "
        f"(median cell), the truth's best cell effects {np.sort(c.effect[:, 1:].max(axis=1))[::-1][:3].round(0)}"
    )
    with pd.option_context("display.width", 200, "display.float_format", "{:.2f}".format):
        print(summary(c, multiples, args.draws, args.seed, args.top, args.shortlist).to_string(index=False))
    gains = [1.05, 1.10, 1.15, 1.25]
    for label, n in (("the held-out rows", c.held_out_rows), ("every row", int(c.rows.sum()))):
        se, power = ab_test_power(c, gains, n)
        found = ", ".join(f"{g:.2f}x: {p:.2f}" for g, p in zip(gains, power, strict=True))
        print(
            f"an A/B test of two policies on {label} ({n:,}), outcomes adjusted by their exact expectations: "
            f"s.e. >= {se:,.0f} KRW (best single arm {c.best_single_value():,.0f}); chance the guard finds "
            f"a policy worth {found}"
        )
    if args.plot:
        title = (
            f"{args.home.name}: the chance of proving a gain, at best\n(an on-policy A/B test, each outcome "
            f"adjusted by its exact expectation; s.d. left {c.held_out_residual_sd:,.0f} KRW per row)"
        )
        print(f"plot: {plot_power(c, args.plot, title)}")


if __name__ == "__main__":
    main()
