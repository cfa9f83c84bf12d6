"""The whole-base batch at scale: wall time of each step and peak memory of one `rekindle batch`.

    .venv/bin/python -m benchmarks.batch_scale --home W1M --registry sqlite:///W20K/mlflow.db

W1M is a built world (simulate, segment, `features build`); the model comes from the registry given
(default: the home's own), by alias (default challenger: a small world rarely promotes a champion). The
batch runs as in production: every candidate's features from the offline store in one point-in-time
join, every arm scored, the serving policy (rules, overrides, exploration, holdout), the ensemble's
confidence, every decision logged in the system store, the output file and the campaign files per event
type written. Peak memory is this process's maximum resident set.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from core.config import load_config
from serving.batch import run_batch
from training import registry
from training.scorer import Scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--registry", help="MLflow tracking URI holding the model (default: the home's)")
    ap.add_argument("--model", default="challenger", help="alias or version (default challenger)")
    ap.add_argument("--out", type=Path, help="output file (default <home>/bench-batch.parquet)")
    args = ap.parse_args()
    if args.registry:
        os.environ["MLFLOW_TRACKING_URI"] = args.registry
    cfg = load_config(home=args.home)
    start = time.perf_counter()
    with registry.tracking(cfg):
        uri, version = registry.resolve(cfg.training.model_name, args.model)
        scorer = Scorer(registry.load_model(uri), cfg.business.margin, cfg.training.objective)
    loaded = time.perf_counter() - start
    out = args.out or cfg.path("bench-batch.parquet")
    result = run_batch(cfg, scorer, as_of=None, out=out, model_version=version, replace=True, split=True)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    d = result.decisions
    print(f"model {version} from {registry.tracking_uri(cfg)}; batch at {result.as_of:%Y-%m-%dT%H:%M}")
    print(f"candidates: {len(d):,}   offers: {(d['event_type'] != 'none').sum():,}   logged as {result.campaign}")
    steps = {"load model": loaded, **result.seconds}
    print("seconds: " + ", ".join(f"{k} {v:,.1f}" for k, v in steps.items()))
    print(f"wall time: {total:,.1f} s   peak RSS: {peak:.2f} GiB   output: {out} + {len(result.files)} campaign files")


if __name__ == "__main__":
    main()
