"""ROI accuracy of the served decisions after a loop (`rekindle run`), against the measured outcomes and the
simulator's truth.

    .venv/bin/python -m experiments.roi_truth --home /work/dev/full6 [--before 2026-11-09]

Per (segment, arm) cell of the decisions the system served itself (the policy and the canary variants, or
no experiment; not explored, not held out), pooled over the loop's weeks:

- **predicted**: the mean logged incremental net value the model promised for the arm sent;
- **true**: the mean of the simulator's expected incremental net value of that arm for those players
  (``truth/responses``: margin x (expected deposits - expected deposits with no offer) - expected cost);
- **realised**: offered mean net value - the same segment's held-out players' (:func:`monitoring.roi.roi_cells`),
  with its standard error, and the players the cell would need for that error to be 10% of the true value
  (``n x (se / (0.1 |true|))^2``): the size at which the realised value can judge a prediction at all.

Accuracy pooled over cells, weighted by offered rows: ``1 - sum(n |p - v|) / sum(n |v|)`` with ``v`` the true
or the realised value (reliable cells only for the realised). ``--before`` keeps the decisions decided before
that time (e.g. the drift: the model was trained on the world before it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import load_config
from monitoring.roi import pooled_accuracy, roi_cells
from system_db.outcomes import Outcomes
from system_db.store import SystemStore


def true_values(truth_dir: Path, margin: float) -> pd.DataFrame:
    """Every forward-mode decision's true expected incremental net value of the arm it sent."""
    parts = [pd.read_parquet(p) for p in sorted((truth_dir / "responses").glob("responses-*.parquet"))]
    if not parts:
        raise SystemExit(f"no responses under {truth_dir / 'responses'}: run the loop first (`rekindle run`)")
    r = pd.concat(parts, ignore_index=True)
    none = r["event_type"] == "none"
    inc = margin * (r["expected_deposits"] - r["expected_deposits_none"]) - r["expected_cost"]
    return pd.DataFrame({
        "player_id": r["player_id"].astype("int64"), "decided_at": pd.to_datetime(r["sent_at"]),
        "true_inc_net": np.where(none, 0.0, inc),
    })  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--before", help="only decisions decided before this time (e.g. the drift's first week)")
    args = ap.parse_args()
    db = args.home / "rekindle.db"
    if not db.is_file():  # a wrong --home would otherwise get an empty system store created in it
        raise SystemExit(f"--home {args.home}: no system store {db}; give the home of a `rekindle run`")
    cfg = load_config(home=args.home)
    margin = cfg.business.margin
    frame = Outcomes(SystemStore(f"sqlite:///{db}")).read()
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    frame = frame.merge(true_values(args.home / "truth", margin), on=["player_id", "decided_at"], how="inner")
    if args.before:
        frame = frame[frame["decided_at"] < pd.Timestamp(args.before)]
    # the system's own decisions, and its controls: the policy's holdout and the experiment's holdout variant
    own = frame["variant"].isna() | frame["variant"].isin(["policy", "challenger", "holdout"])
    served = frame[own]
    cells = roi_cells(served, reliable_se=0.1)
    arm = np.where(served["event_type"] == "none", "none", served["event_type"] + "@" + served["reward"].astype(str))
    held = served["holdout"].astype(bool) | (served["variant"] == "holdout")
    sent = served[~held & ~served["explored"].astype(bool) & (arm == served["policy_arm"])]
    sent_arm = sent["event_type"] + "@" + sent["reward"].astype(str)
    truth = sent.assign(arm=sent_arm).groupby(["segment", "arm"])["true_inc_net"].mean().rename("true")
    cells = cells.join(truth, on=["segment", "arm"])
    cells["n_for_10pct"] = (cells["n_offered"] * (cells["se"] / (0.1 * cells["true"].abs())) ** 2).where(
        cells["se"] > 0
    )
    show = cells[["segment", "arm", "n_offered", "n_control", "predicted", "true", "realised", "se", "n_for_10pct",
                  "reliable"]]  # fmt: skip
    print(f"{len(sent):,} served offers measured ({sent['decided_at'].nunique()} weeks), {len(cells)} cells")
    print(show.sort_values("n_offered", ascending=False).to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
    vs_truth = pooled_accuracy(cells.assign(realised=cells["true"]))
    reliable = cells[cells["reliable"]]
    vs_realised = pooled_accuracy(reliable)
    print(f"\nROI accuracy against the truth, every cell (weighted by offered rows): {vs_truth:.3f}")
    print(f"ROI accuracy against the realised value, reliable cells ({len(reliable)} of {len(cells)}): "
          + (f"{vs_realised:.3f}" if vs_realised is not None else "none reliable"))  # fmt: skip
    n = cells["n_offered"]
    need, median = cells["n_for_10pct"].median(), n.median()
    print(f"players a cell needs for the realised value's s.e. to be 10% of it: median {need:,.0f} "
          f"(cells hold {median:,.0f} offered players at the median)")  # fmt: skip
    pooled = {k: float((cells[k] * n).sum() / n.sum()) for k in ("predicted", "true", "realised")}
    se = float(np.sqrt((cells["se"] ** 2 * n**2).sum()) / n.sum())
    print(f"all cells pooled: predicted {pooled['predicted']:+,.0f}, true {pooled['true']:+,.0f}, realised "
          f"{pooled['realised']:+,.0f} (s.e. {se:,.0f}) KRW per offered player")  # fmt: skip


if __name__ == "__main__":
    main()
