"""``rekindle run``: the main job on the embedded default, every step of the data flow in order."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
import pandas as pd

from app.cli.data import run_segmentation, run_simulation, run_validation
from app.cli.features import run_feature_build, run_materialize, run_training_set
from app.cli.loop import EQUAL_COST_TO, parse_shares
from app.cli.models import run_decisions, run_training
from app.cli.root import Context, console, err_console, friendly_errors
from core.config import Config, sqlite_url
from core.timeutil import utc_now

if TYPE_CHECKING:
    from training.scorer import ArmRule


def embedded(cfg: Config) -> Config:
    """``cfg`` on the embedded default: the SQLite files under the home and the embedded feature store,
    whatever the configuration or the environment name (``run`` replaces the simulated platform)."""
    from platform_db.db import safe_url

    platform = sqlite_url(cfg.home / "platform.db")
    if cfg.db_url != platform:
        console.print(f"[yellow]note:[/] `run` uses the embedded default {platform}, not {safe_url(cfg.db_url)}")
    cfg = cfg.model_copy(update={"db_url": platform, "system_db_url": sqlite_url(cfg.home / "rekindle.db")})
    if cfg.features.store.mode != "embedded":
        console.print("[yellow]note:[/] `run` uses the embedded feature store, not features.store.mode: production")
        store = cfg.features.store.model_copy(update={"mode": "embedded"})
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"store": store})})
    return cfg


@click.command("run")
@click.option("--players", type=click.IntRange(min=100), help="Players (default from configs/simulator.yaml).")
@click.option("--days", type=click.IntRange(min=30), help="Days of history (default from configs/simulator.yaml).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (default from configs/simulator.yaml).")
@click.option(
    "--weeks",
    type=click.IntRange(min=0),
    help="Simulated weeks of the closed loop after the first training (default 8; 4 with --quick; 0: stop after "
    "the first batch).",
)
@click.option(
    "--drift-week",
    type=click.IntRange(min=1),
    help="The week from which the world drifts (the policy's most sent event type loses 70% of its pull; "
    "default 5; 3 with --quick).",
)
@click.option(
    "--variants",
    metavar="V=S,...",
    help="The loop's experiment (default policy=0.35,equal_cost=0.15,random=0.125,marketers=0.125,best_arm=0.125,"
    "holdout=0.125).",
)
@EQUAL_COST_TO
@click.option(
    "--quick", is_flag=True, help="A small world (5,000 players, 120 days) and 4 weeks: a few minutes, for CI."
)
@click.pass_obj
@friendly_errors
def run_all(obj: Context, players: int | None, days: int | None, seed: int | None, weeks: int | None,
            drift_week: int | None, variants: str | None, equal_cost_to: str, quick: bool) -> None:  # fmt: skip
    """The main job on the embedded default: simulate, validate, segment, build features, train set,
    train and evaluate models, decide for every dormant candidate; then play the closed loop for --weeks
    simulated weeks (experiment, feedback, monitoring, retraining, canary) with a drift from --drift-week.

    It always works on the SQLite files under the home (it replaces the simulated
    platform there), never on a database given with --db or REKINDLE_DB_URL."""
    if quick:
        players, days = players or 5000, days or 120
    weeks = weeks if weeks is not None else (4 if quick else 8)
    drift_week = drift_week or (3 if quick else 5)
    loop_variants = parse_shares(variants) if variants else None
    if loop_variants is not None:  # checked before minutes of work, not after them
        from serving.experiments import ExperimentError, check_shares

        try:
            check_shares(loop_variants)
        except ExperimentError as exc:
            raise click.BadParameter(str(exc), param_hint="--variants") from None
    over = {k: v for k, v in (("players", players), ("days", days), ("seed", seed)) if v is not None}
    cfg = embedded(obj.config({"simulator": over} if over else None))
    console.rule("1. simulate the platform")
    summary = run_simulation(cfg, cfg.path("truth"), overwrite=True)
    console.rule("2. validate it")
    # the simulated world may end after this machine's clock: judge "future" from its as-of time then
    if not run_validation(cfg, max(summary.as_of, utc_now()), None):
        err_console.print("[bold red]validation failed; stopping[/]")
        sys.exit(1)
    console.rule("3. segment the players")
    run_segmentation(cfg, summary.as_of, cfg.path("segments", f"segments-{summary.as_of:%Y%m%dT%H%M}.parquet"))
    console.rule("4. build the feature store")
    run_feature_build(cfg, summary.as_of, None, row_checks=False)  # step 2 just passed
    console.rule("5. load the candidates into the online store")
    run_materialize(cfg)
    console.rule("6. build the training set")
    run_training_set(cfg, None, cfg.path("training", "training_set.parquet"), row_checks=False)
    decide(cfg)
    if weeks:
        play_the_loop(cfg, weeks, drift_week, loop_variants, equal_cost_to)
    console.print(f"\nall state is under {cfg.home}")


def play_the_loop(
    cfg: Config, weeks: int, drift_week: int, variants: dict[str, float] | None = None, equal_cost_to: str = "random"
) -> None:
    """Steps 9 and on: the closed loop, week by week, with a drift from ``drift_week`` on."""
    from app.cli.loop import run_experiment_report
    from app.cli.play import play
    from app.loop_report import print_weeks, write_loop_report

    console.rule(f"9. the closed loop: {weeks} simulated weeks, the world drifts from week {drift_week}")
    decisions = pd.read_csv(cfg.path("decisions.csv"), usecols=["event_type"])
    offered = decisions.loc[decisions["event_type"] != "none", "event_type"]
    top = str(offered.value_counts().idxmax()) if len(offered) else "cashback"
    drift = {"event_multiplier": {top: 0.3}}
    console.print(f"drift from week {drift_week}: {top} keeps 30% of its pull on players (simulator drift knob)")
    played = play(cfg, weeks=weeks, drift_week=drift_week - 1, drift=drift, truth=cfg.path("truth"), variants=variants,
                  equal_cost_to=equal_cost_to)  # fmt: skip
    print_weeks(console, played.weeks)
    played.weeks.to_csv(cfg.path("loop", "weeks.csv"), index=False)  # for analysis after the run
    played.truth.to_parquet(cfg.path("loop", "truth.parquet"), index=False)  # each decision's true values
    f = played.final
    console.print(
        f"the policy after the loop, against the simulator's truth at the final clock ({f['candidates']:,.0f} "
        f"candidates, {f['offers']:.0%} offered): {f['policy_net']:+,.0f} KRW incremental net value and "
        f"{f['policy_reengage']:+.4f} re-engagement per candidate; the oracle {f['oracle_net']:+,.0f} KRW"
    )
    for name in played.experiments:  # a canary restarts the experiment (same salt) under a derived name
        console.rule(f"10. the experiment {name}: every variant over its weeks, measured")
        run_experiment_report(cfg, name, None)
    path = write_loop_report(played, cfg.path("loop", "report.html"), drift_week=drift_week, drifted=top)
    console.print(f"loop report: {path}")


def decide(cfg: Config) -> None:
    """Steps 7 and 8: train, evaluate and register; then the batch decisions of the champion, or of the
    fallback (the best single arm for everyone, or the best arm per segment) when no model is trusted."""
    from training.arms import ArmError
    from training.data import TrainingDataError
    from training.registry import CHALLENGER, CHAMPION, champion_version

    console.rule("7. train, evaluate (against the simulator's truth) and register the response models")
    try:
        trained = run_training(cfg, defaults=False, truth=cfg.path("truth"))
    except (TrainingDataError, ArmError) as exc:  # a world too small to learn from: the steps before still stand
        console.print(f"[yellow]note:[/] no training: {exc}")
        return
    console.rule("8. decide for every dormant candidate (batch)")
    out = cfg.path("decisions.csv")
    if trained.promoted or champion_version(cfg) is not None:
        if not trained.promoted:
            console.print(f"[yellow]note:[/] the new model is not champion ({trained.reason}); the champion decides")
        run_decisions(cfg, as_of=None, out=out, model=CHAMPION, replace=True)
    else:  # no trusted learned policy: the fallback the promotion's reason names
        e = trained.judged.evaluation
        rule = e.estimated_baselines[e.fallback]
        arm: ArmRule = rule["all"] if set(rule) == {"all"} else rule
        said = arm if isinstance(arm, str) else f"the {e.fallback} ({', '.join(f'{s}: {a}' for s, a in rule.items())})"
        console.print(f"[yellow]note:[/] no model is champion ({trained.reason}); every candidate gets {said}")
        run_decisions(cfg, as_of=None, out=out, model=CHALLENGER, arm=arm, replace=True)
