"""The canary's verdict: the challenger variant (the canary model) against the policy variant (the
champion) on the net value per measured player, with CUPED (:mod:`monitoring.experiment_stats`). Pure.

- **promote** when the canary is not worse: the lower end of the difference's 95% interval is above
  ``-margin x |champion's net value per player|`` (non-inferiority);
- **roll back** when it is worse: the upper end is below zero;
- **wait** otherwise, or while either side has fewer than ``min_players`` measured players.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from monitoring.experiment_stats import Metric, analyse

Action = Literal["promote", "roll back", "wait"]
NET = Metric("net_value", "net value per player (KRW)", covariate="net_value_pre", primary=True)


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    figures: dict[str, float]


def canary_verdict(players: pd.DataFrame, shares: dict[str, float], *, margin: float, min_players: int) -> Verdict:
    """``players``: one row per measured player of the canary's experiment (variant, net_value,
    net_value_pre)."""
    n = players["variant"].value_counts()
    n_c, n_p = int(n.get("challenger", 0)), int(n.get("policy", 0))
    figures: dict[str, float] = {"players_challenger": n_c, "players_policy": n_p}
    if min(n_c, n_p) < min_players:
        return Verdict("wait", f"too few measured players yet ({n_c:,} on the canary, {n_p:,} on the champion; "
                               f"{min_players:,} each needed)", figures)  # fmt: skip
    report = analyse(players, shares, treatments=["challenger"], controls=["policy"], metrics=[NET])
    c = report.comparisons
    row = c[c["metric"] == "net_value_cuped"].iloc[0].to_dict()
    low, high, base = float(row["effect_lower"]), float(row["effect_upper"]), float(row["control_mean"])
    figures |= {"effect": float(row["effect"]), "effect_lower": low, "effect_upper": high, "champion_mean": base,
                "canary_mean": float(row["treatment_mean"])}  # fmt: skip
    said = f"canary - champion {row['effect']:+,.0f} KRW per player [{low:+,.0f}, {high:+,.0f}] (CUPED)"
    if low > -margin * abs(base):
        return Verdict("promote", f"not worse: {said}, above -{margin:.0%} of the champion's {base:,.0f}", figures)
    if high < 0:
        return Verdict("roll back", f"worse: {said}", figures)
    return Verdict("wait", f"undecided: {said}", figures)


def undecided_after_drift(verdict: Verdict, *, champion_drifted: bool) -> Verdict:
    """The verdict for a canary still undecided after the runs it may wait (``verdict``: the roll-back that
    says so): rolled back -- unless the monitor finds the champion's world drifted (its offers lost their pull)
    and the canary measured at least as well as the champion on its own players. Then keeping the champion is
    the riskier choice, and the canary is promoted (``retrain.promote_undecided_on_drift``)."""
    effect = verdict.figures.get("effect")
    if not champion_drifted or effect is None or effect < 0:
        return verdict
    return Verdict("promote", f"the champion drifted (monitor) and the canary measured no worse; {verdict.reason}",
                   verdict.figures)  # fmt: skip
