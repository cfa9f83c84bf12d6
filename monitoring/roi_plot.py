"""The picture of realised against predicted: one point per (segment, arm) cell with its interval, and the
weekly pooled values (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_roi(cells: pd.DataFrame, weeks: pd.DataFrame, out: Path) -> Path:
    """Write the plot to ``out`` (written to a temporary name first, then moved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    for reliable, colour, label in ((True, "tab:blue", "reliable (s.e. < 10%)"), (False, "tab:gray", "too noisy")):
        c = cells[cells["reliable"] == reliable]
        if len(c):
            left.errorbar(c["predicted"], c["realised"], yerr=1.96 * c["se"], fmt="o", color=colour, label=label,
                          alpha=0.8, capsize=2)  # fmt: skip
    if len(cells):
        lo = float(min(cells["predicted"].min(), (cells["realised"] - 1.96 * cells["se"]).min(), 0))
        hi = float(max(cells["predicted"].max(), (cells["realised"] + 1.96 * cells["se"]).max(), 0))
        left.plot([lo, hi], [lo, hi], "k--", lw=1, label="realised = predicted")
    left.set(xlabel="predicted incremental net value per offer (KRW)", ylabel="realised (KRW, 95% interval)",
             title="Per (segment, arm) cell")  # fmt: skip
    left.legend(loc="best", fontsize=8)
    if len(weeks):
        x = range(len(weeks))  # one tick per week, labelled by its Monday
        right.plot(x, weeks["predicted"], "o-", label="predicted")
        right.plot(x, weeks["realised"], "s-", label="realised")
        right.set_xticks(list(x), pd.to_datetime(weeks["week"]).dt.strftime("%Y-%m-%d"))
        right.legend(loc="best", fontsize=8)
    right.set(xlabel="week decided", ylabel="incremental net value per offer (KRW)", title="Over time")
    right.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
