"""The calibration picture of a simulated world (``<truth>/calibration.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def plot_calibration(cal: dict[str, Any], decisions: pd.DataFrame, path: Path) -> Path:
    """Three panels: what each arm earns per candidate against the oracle, on how
    many candidates it loses money, and how noisy a player's 7-day deposits are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = pd.DataFrame(cal["per_arm"])
    arms["arm"] = arms["event_type"] + " " + arms["reward"].map("{:,}".format)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.3, 1.0, 1.0]})

    ax = axes[0]
    colors = np.where(arms["mean_incremental_net"] >= 0, "#2a9d8f", "#e76f51")
    ax.barh(arms["arm"], arms["mean_incremental_net"], color=colors)
    ax.axvline(
        cal["oracle_incremental_net_per_candidate"], color="#264653", ls="--", label="oracle (best arm per player)"
    )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("incremental net value per candidate (KRW)")
    ax.set_title(f"arms vs the oracle: oracle / best single = {cal['oracle_over_best_single']:.2f}x")
    ax.legend(loc="lower right")
    ax.invert_yaxis()

    ax = axes[1]
    ax.barh(arms["arm"], arms["share_losing"] * 100, color="#e9c46a")
    ax.axvline(50, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("% of candidates the arm loses money on")
    ax.set_title("most offers lose money on most players")
    ax.set_yticklabels([])
    ax.invert_yaxis()

    ax = axes[2]
    rnd = decisions[decisions["group"] == "random"] if len(decisions) else decisions
    if len(rnd):
        deposits = rnd["realised_deposits"].to_numpy()
        positive = deposits[deposits > 0]
        ax.hist(np.log10(positive), bins=40, color="#8ab17d")
        ax.axvline(
            np.log10(max(cal["max_mean_deposit_effect_of_an_arm"], 1)),
            color="#e76f51",
            ls="--",
            label="largest mean effect of an arm",
        )
        ax.set_xlabel("log10 7-day deposits (KRW), windows with a deposit")
        ax.set_title(f"{(deposits == 0).mean():.0%} of 7-day windows have no deposit")
        ax.legend(loc="upper left")
    fig.suptitle(
        f"simulated world at {cal.get('as_of')}: {cal['players']:,} players, "
        f"{cal['dormant_share']:.0%} dormant, {cal['candidates']:,} candidates"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
