"""How well the simulator's truth predicts what it simulated: per arm in the
randomised slice, and pooled over every campaign decision.

    .venv/bin/python benchmarks/truth_vs_outcomes.py var/truth
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def compare(d: pd.DataFrame) -> pd.Series:
    n = len(d)
    p = d["p_reengage"].to_numpy()
    se_p = np.sqrt((p * (1 - p)).sum()) / n
    dep = d["realised_deposits"] - d["expected_deposits"]
    return pd.Series(
        {
            "n": n,
            "reengage_truth": p.mean(),
            "reengage_realised": d["realised_reengaged"].mean(),
            "z_reengage": (d["realised_reengaged"].mean() - p.mean()) / se_p,
            "deposits_truth": d["expected_deposits"].mean(),
            "deposits_realised": d["realised_deposits"].mean(),
            "z_deposits": dep.mean() / (dep.std() / np.sqrt(n)),
            "cost_truth": d["expected_cost"].mean(),
            "cost_realised": d["realised_cost"].mean(),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("truth_dir", type=Path)
    args = ap.parse_args()
    d = pd.read_parquet(args.truth_dir / "decisions.parquet")
    rnd = d[d["group"] == "random"]
    table = rnd.groupby(["event_type", "reward"])[list(rnd.columns)].apply(compare)
    pd.set_option("display.width", 200)
    print("randomised slice, per arm (z = (realised - truth) / standard error)")
    print(table.to_string(float_format=lambda v: f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"))
    zr, zd = table["z_reengage"].abs().max(), table["z_deposits"].abs().max()
    print(f"\nlargest |z| over arms: re-engagement {zr:.2f}, deposits {zd:.2f}")
    p = compare(d)
    print(f"\nall {int(p['n']):,} decisions pooled:")
    print(f"  re-engagement {p['reengage_realised']:.4f} vs truth {p['reengage_truth']:.4f} (z {p['z_reengage']:.2f})")
    print(f"  deposits {p['deposits_realised']:,.0f} vs {p['deposits_truth']:,.0f} KRW (z {p['z_deposits']:.2f})")
    print(f"  reward cost {p['cost_realised']:,.0f} vs {p['cost_truth']:,.0f} KRW")


if __name__ == "__main__":
    main()
