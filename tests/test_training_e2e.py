"""Training end to end on a small simulated platform, through the CLI: tune, train (MLflow run, registry,
aliases, promotion), evaluate against the simulator's truth, batch decisions, and the pyfunc artefact."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from core.config import load_config
from tests.test_webhook import Receiver

pytestmark = pytest.mark.slow

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PLAYERS, DAYS, SEED = 6_000, 120, 3


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated platform with its feature store and training set; a config dir with a small model."""
    root = tmp_path_factory.mktemp("training")
    configs = root / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    raw = yaml.safe_load((configs / "rekindle.yaml").read_text())
    raw["training"].update(
        {
            "split": {"validation_campaigns": 2, "test_campaigns": 2},
            "ensemble": 2,
            "bootstrap": 50,
            "min_cell": 100,
            "tuning_rows": 3000,
        }
    )
    raw["training"]["model"].update({"n_estimators": 60, "min_child_samples": 200, "learning_rate": 0.1})
    (configs / "rekindle.yaml").write_text(yaml.safe_dump(raw))
    h = root / "home"
    base = ("--home", str(h), "--config", str(configs))
    for args in (
        ("simulate", "--players", str(PLAYERS), "--days", str(DAYS), "--seed", str(SEED)),
        ("features", "build", "--skip-row-checks"),
        ("features", "training-set", "--skip-row-checks"),
    ):
        code, out = invoke(*base, *args)
        assert code == 0, out
    return h, configs


def cli(home: tuple[Path, Path], *args: str) -> tuple[int, str]:
    h, configs = home
    return invoke("--home", str(h), "--config", str(configs), *args)


def test_train_before_anything_names_what_is_missing(tmp_path: Path) -> None:
    code, out = invoke("--home", str(tmp_path), "train")
    assert code == 2 and "no training set" in out and "features training-set" in out
    code, out = invoke("--home", str(tmp_path), "evaluate", "--truth", str(tmp_path / "nowhere"))
    assert code == 2 and "is not a directory" in out


def test_business_flags_that_contradict_the_build_are_refused(home) -> None:
    h, configs = home
    cfg = load_config(configs, home=h)
    dormancy, window = cfg.business.dormancy_days + 7, cfg.business.attribution_days - 2
    code, out = cli(home, "features", "training-set", "--dormancy-days", str(dormancy))
    assert code == 2, out
    assert f"dormancy_days {dormancy} (the build used {cfg.business.dormancy_days})" in out
    assert f"features build --dormancy-days {dormancy}" in out
    code, out = cli(home, "train", "--attribution-days", str(window))
    assert code == 2, out
    assert f"attribution_days {window} but the training set was built with {cfg.business.attribution_days}" in out
    assert (h / "training" / "training_set.parquet").is_file()  # nothing was touched


def test_a_platform_whose_event_types_and_rewards_the_catalog_does_not_know(home, tmp_path: Path) -> None:
    """Arms come from the history: renamed event types and rewards no catalog lists still get a model."""
    import sqlite3

    h, configs = home
    other = tmp_path / "home"
    other.mkdir()
    shutil.copy(h / "platform.db", other / "platform.db")
    with sqlite3.connect(other / "platform.db") as db:
        db.execute("UPDATE promotions SET type = 'quest_' || type")
        db.execute("UPDATE promotion_players SET reward = reward + 700")
    base = ("--home", str(other), "--config", str(configs))
    for args in (
        ("features", "build", "--skip-row-checks"),
        ("features", "training-set", "--skip-row-checks"),
        ("train", "--defaults"),
    ):
        code, out = invoke(*base, *args)
        assert code == 0, out
    from mlflow import MlflowClient

    from training import registry

    cfg = load_config(configs, home=other)
    with registry.tracking(cfg):
        version = MlflowClient().get_model_version_by_alias(cfg.training.model_name, "challenger")
        scorer = registry.load_model(registry.model_uri(cfg.training.model_name, "challenger"))
    assert str(version.version) == "1"
    arms = scorer.arms
    learned = arms[arms["source"] == "history"]
    assert len(learned) >= 5 and learned["event_type"].str.startswith("quest_").all()
    assert (learned["reward"] % 1000 == 700).all()  # the shifted rewards, not the catalog's ladder
    assert (learned["payout"] > 0).all()  # priced from the bonus paid, as the catalog does not know them
    code, out = invoke(*base, "batch", "--model", "challenger", "--out", str(other / "d.csv"))
    assert code == 0, out
    d = pd.read_csv(other / "d.csv")
    chosen = set(d["event_type"])
    assert chosen <= set(arms["event_type"]) and chosen & set(learned["event_type"])


def test_tune_train_evaluate_batch(home) -> None:
    import mlflow
    from mlflow import MlflowClient

    h, configs = home
    cfg = load_config(configs, home=h)

    # ---- tune: an Optuna study in the home, nested MLflow runs, best parameters for train
    code, out = cli(home, "tune", "--trials", "3")
    assert code == 0, out
    assert "best doubly robust policy value" in out
    assert (h / "optuna.db").is_file() and (h / "training" / "best_params.json").is_file()

    # ---- train with the truth reported: registered, challenger, promotion decided with a reason
    code, out = cli(home, "train", "--truth", str(h / "truth"))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "registered rekindle-response version 1 as challenger" in flat
    mlflow.set_tracking_uri(f"sqlite:///{h / 'mlflow.db'}")
    client = MlflowClient()
    v1 = client.get_model_version_by_alias("rekindle-response", "challenger")
    assert str(v1.version) == "1"
    reason = v1.tags["promotion"]
    assert reason.startswith(
        (
            "promoted: first champion; beats the best single arm",
            "not promoted: does not beat the best single arm",
            "not promoted: does not beat the best arm per segment",
            "not promoted: too little evidence for the learned policy's estimate",
        )
    ), reason
    assert "fall back to" in reason or " and the best arm per segment (" in reason
    assert " ".join(reason.split()) in flat  # the decision printed is the one recorded on the version
    run = client.get_run(v1.run_id if v1.run_id else v1.tags["run_id"])
    metrics = run.data.metrics
    for key in ("learned_net_value_dr", "learned_net_value_truth", "oracle_net_value_truth", "roi_accuracy"):
        assert key in metrics, key
    assert metrics["oracle_net_value_truth"] >= metrics["learned_net_value_truth"]  # nothing beats the oracle
    assert run.data.tags["feature_service"] == "rekindle_player_v1"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/evaluation.html" in artifacts and "evaluation/uplift_curves.png" in artifacts
    report = next((h / "reports").glob("train-*/evaluation.html")).read_text()
    assert "policy values" in report and "data:image/png;base64" in report
    # the verdict comes first and is the decision recorded on the version; every metric comes last
    verdict = report.index("<h2>Verdict</h2>")
    assert verdict < report.index("by policy and estimator") < report.index("<img") < report.index("All metrics")
    headline = "Promoted: the learned policy beats" if reason.startswith("promoted") else "Not promoted: fall back to"
    assert headline in report[verdict : verdict + 400]
    assert html.escape(f"Decision: {reason}.") in report

    promoted = reason.startswith("promoted")
    champion = client.get_registered_model("rekindle-response").aliases.get("champion")
    assert (str(champion) == "1") == promoted  # the alias follows the decision

    # ---- a second model: challenger moves, champion only if it beats the champion on the same rows
    code, out = cli(home, "train", "--defaults")
    assert code == 0, out
    aliases = client.get_registered_model("rekindle-response").aliases
    assert str(aliases["challenger"]) == "2"
    v2 = client.get_model_version("rekindle-response", "2")
    if v2.tags["promotion"].startswith("promoted"):
        assert str(aliases["champion"]) == "2"
        if promoted:  # against a champion, the paired comparison on the same rows decided
            assert "beats champion v1 on the same held-out rows" in v2.tags["promotion"]
    else:
        assert aliases.get("champion") == champion  # a refused model moves no alias

    # ---- evaluate a registered model against the truth
    code, out = cli(home, "evaluate", "--model", "1", "--truth", str(h / "truth"))
    assert code == 0, out
    assert "headroom captured" in out and "ROI accuracy" in out

    # ---- batch: one decision per candidate at the as-of; the simulator's truth scores it
    out_file = h / "decisions.parquet"
    code, out = cli(home, "batch", "--model", "challenger", "--out", str(out_file))
    assert code == 0, out
    d = pd.read_parquet(out_file)
    truth = pd.read_parquet(h / "truth" / "truth.parquet")
    assert sorted(d["player_id"]) == sorted(truth["player_id"].unique())  # every candidate, once
    assert ((d["event_type"] == "none") == (d["reward"] == 0)).all()
    assert d["expected_cost"].dtype == np.int64 and d["incremental_net_value"].dtype == np.int64
    assert d["confidence"].between(0, 1).all()
    offers = d[d["event_type"] != "none"]
    assert (offers["incremental_net_low"] <= offers["incremental_net_value"]).all()
    scored = d.merge(truth, on=["player_id", "event_type", "reward"], how="left", validate="1:1")
    assert scored["incremental_net_value_y"].notna().all()
    per_arm = truth[truth["event_type"] != "none"].groupby(["event_type", "reward"])["incremental_net_value"].mean()
    # the learned policy beats sending a random arm to everyone, by the truth
    assert scored["incremental_net_value_y"].mean() > per_arm.mean()

    # ---- the pyfunc artefact: every arm of every candidate, the values the batch decided on
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/rekindle-response@challenger")
    assert model.metadata.get_input_schema() is not None and model.metadata.signature.params is not None
    from features.candidates import candidate_features, snapshot_at

    t, snap = snapshot_at(cfg, None)
    frame = candidate_features(cfg, t, snap).head(50)
    arms = model.predict(frame[model.metadata.get_input_schema().input_names()])
    n_arms = arms["arm"].nunique()
    assert len(arms) == 50 * n_arms and n_arms >= 5
    chosen = arms.merge(d, on=["player_id", "event_type", "reward"], suffixes=("", "_batch"))
    assert len(chosen) == 50  # each candidate's decision is one of its arms ...
    for col in ("expected_cost", "incremental_net_value"):  # ... with the same expected values
        assert (chosen[col] == chosen[f"{col}_batch"]).all(), col
    # a batch with a budget spends at most the budget (expected cost)
    code, out = cli(home, "batch", "--model", "challenger", "--out", str(h / "b.csv"), "--budget", "100000")
    assert code == 2 and "already holds" in out and "--replace" in out  # a batch is logged once
    code, out = cli(
        home, "batch", "--model", "challenger", "--out", str(h / "b.csv"), "--budget", "100000", "--replace"
    )
    assert code == 0, out
    assert "within" in out and "of its LP bound" in out
    assert pd.read_csv(h / "b.csv")["expected_cost"].sum() <= 100_000 + len(d)  # rounding to whole KRW
    code, out = cli(home, "batch", "--model", "challenger", "--out", str(h / "b.txt"))
    assert code == 2 and ".csv or .parquet" in out
    # the fallback: one arm for everyone, with the model's expected values of that arm
    code, out = cli(
        home, "batch", "--model", "challenger", "--out", str(h / "f.csv"), "--arm", "cashback@10000", "--replace",
        "--split",
    )  # fmt: skip
    assert code == 0, out
    f = pd.read_csv(h / "f.csv")
    # the campaign, one file per event type: every offer once, nothing else
    parts = {p.name.split(".")[1]: pd.read_csv(p) for p in h.glob("f.*.csv")}
    offers = f[f["event_type"] != "none"]
    assert set(parts) == set(offers["event_type"]) and sum(len(p) for p in parts.values()) == len(offers)
    assert set(parts["cashback"]["decision_id"]) == set(offers.loc[offers["event_type"] == "cashback", "decision_id"])
    assert list(parts["cashback"].columns) == ["player_id", "reward", "decision_id"]
    ruled = f[~f["explored"] & ~f["holdout"] & ~f["reason"].str.startswith("frequency cap")]
    assert len(f) == len(d) and len(ruled) > 0.8 * len(f)
    assert (ruled["event_type"] == "cashback").all() and (ruled["reward"] == 10_000).all()
    assert f["holdout"].mean() < 0.1 and (f.loc[f["holdout"], "event_type"] == "none").all()
    # every decision of the batch is in the decision log, once, with its propensity
    logged = pd.read_sql("SELECT * FROM decisions WHERE source = 'batch'", f"sqlite:///{h / 'rekindle.db'}")
    assert len(logged) == len(f) and set(logged["decision_id"]) == set(f["decision_id"])
    # each row logs the arm the policy would have sent it: the fallback's arm, for the held-out rows too
    held = logged[logged["holdout"].astype(bool)]
    assert len(held) > 0 and (held["policy_arm"] == "cashback@10000").all()
    sent = logged[(logged["event_type"] != "none") & ~logged["explored"].astype(bool)]
    assert (sent["policy_arm"] == sent["event_type"] + "@" + sent["reward"].astype(str)).all()
    code, out = cli(home, "batch", "--model", "challenger", "--out", str(h / "f.csv"), "--arm", "cashback@7")
    assert code == 2 and "unknown arm 'cashback@7'" in out
    code, out = cli(
        home, "batch", "--model", "challenger", "--out", str(h / "f.csv"), "--arm", "cashback@10000", "--budget", "5"
    )
    assert code == 2 and "takes no --budget" in out
    # the campaign to an event system's webhook: every offer once; resumable; no longer replaceable
    receiver = Receiver()
    try:
        fallback = (
            "batch", "--model", "challenger", "--out", str(h / "w.csv"), "--arm", "cashback@10000", "--replace",
        )  # fmt: skip
        code, out = cli(home, *fallback, "--webhook", receiver.url, "--chunk-size", "50")
        assert code == 0, out
        w = pd.read_csv(h / "w.csv")
        assert sorted(receiver.offers()) == sorted(w.loc[w["event_type"] != "none", "decision_id"])
        campaign = re.search(r"logged as (batch-\S+)", out).group(1)  # type: ignore[union-attr]
        assert f"all {-(-len(receiver.offers()) // 50)} chunks of {campaign} delivered" in " ".join(out.split())
        code, out = cli(home, *fallback)
        assert code == 2 and "was already sent" in out and f"rekindle campaign send {campaign}" in " ".join(out.split())
        code, out = cli(home, "campaign", "send", campaign, "--webhook", receiver.url)
        assert code == 0 and "0 chunks sent" in out and "had been delivered before" in out, out
        assert len(receiver.received) == -(-len(receiver.offers()) // 50)  # nothing sent twice
        code, out = cli(home, "campaign", "send", "batch-nope", "--webhook", receiver.url)
        assert code == 2 and "no batch 'batch-nope'" in out
    finally:
        receiver.server.shutdown()


def local_versions(home: tuple[Path, Path]) -> list:
    from mlflow import MlflowClient

    sqlite = f"sqlite:///{home[0] / 'mlflow.db'}"
    return MlflowClient(tracking_uri=sqlite, registry_uri=sqlite).search_model_versions("name='rekindle-response'")


@pytest.mark.postgres
def test_tune_and_train_on_postgresql(home, pg_database_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production: the Optuna study and the MLflow tracking store + registry in PostgreSQL."""
    import optuna
    from mlflow import MlflowClient

    study_db, mlflow_db = pg_database_factory(), pg_database_factory()
    before = {str(v.version) for v in local_versions(home)}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_db)
    code, out = cli(home, "tune", "--trials", "2", "--storage", study_db, "--study", "pg-study")
    assert code == 0, out
    study = optuna.load_study(study_name="pg-study", storage=study_db.replace("postgresql://", "postgresql+psycopg://"))
    assert len(study.trials) == 2
    code, out = cli(home, "train")
    assert code == 0, out
    pg = mlflow_db.replace("postgresql://", "postgresql+psycopg://")
    versions = MlflowClient(tracking_uri=pg, registry_uri=pg).search_model_versions("name='rekindle-response'")
    assert [str(v.version) for v in versions] == ["1"]  # a registry of its own, apart from the home's SQLite one
    assert {str(v.version) for v in local_versions(home)} == before  # nothing reached the home's own registry


ARTEFACT_SCRIPT = """
import sys
from pathlib import Path

repo, tracking, uri, rows, out = sys.argv[1:]
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(repo).resolve()]
import importlib.util

gone = [m for m in ("training", "features", "core", "scoring") if importlib.util.find_spec(m) is not None]
assert not gone, f"still importable: {gone}"
import mlflow
import pandas as pd

mlflow.set_tracking_uri(tracking)
model = mlflow.pyfunc.load_model(uri)
model.predict(pd.read_parquet(rows)).to_parquet(out)
print(sys.modules["scoring"].__file__)
"""


def test_a_registered_model_is_data_and_loads_without_the_code_that_trained_it(home, tmp_path: Path) -> None:
    """The artefact holds LightGBM text boosters and JSON, no pickle; a process in which none of the
    project's packages can be imported (as after renaming them) loads it from the registry and scores
    exactly what the project's own code scores."""
    import subprocess
    import sys

    import mlflow

    from scoring.ensemble import arm_frame
    from training import registry

    h, configs = home
    mine = tmp_path / "home"
    (mine / "training").mkdir(parents=True)
    shutil.copy(h / "training" / "training_set.parquet", mine / "training" / "training_set.parquet")
    code, out = invoke("--home", str(mine), "--config", str(configs), "train", "--defaults", "--ensemble", "2")
    assert code == 0, out
    cfg = load_config(configs, home=mine)
    with registry.tracking(cfg):
        uri, version = registry.resolve(cfg.training.model_name, "challenger")
        model = registry.load_model(uri)
        files = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    assert version == f"{cfg.training.model_name}/1" and uri == f"models:/{cfg.training.model_name}/1"
    stored = [p for p in files.rglob("*") if p.is_file()]
    document = json.loads(next(p for p in stored if p.name == "model.json").read_text())
    heads = [files / "artifacts" / "response_model" / rel for m in document["members"] for rel in m["heads"].values()]
    assert len(heads) == 2 * 3 and all(h.read_text().startswith("tree") for h in heads)  # LightGBM's text format
    assert not [p for p in stored if p.suffix in (".pkl", ".pickle") or p.read_bytes()[:1] == b"\x80"]
    assert document["version"] == 2 and all(m["deposit_factors"] for m in document["members"])
    # a version-1 model (before the deposit-size factors) still loads: its deposits head reads the arm's columns
    from scoring import artefact

    legacy = tmp_path / "version1"
    shutil.copytree(files / "artifacts" / "response_model", legacy)
    members = [{k: v for k, v in m.items() if k != "deposit_factors"} for m in document["members"]]
    (legacy / "model.json").write_text(json.dumps(document | {"version": 1, "members": members}))
    assert [m.deposit_factors for m in artefact.load(legacy).members] == [None, None]

    rows = pd.read_parquet(mine / "training" / "training_set.parquet").head(200)
    rows = rows[model.input_columns()]
    rows.to_parquet(tmp_path / "rows.parquet")
    repo = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-c", ARTEFACT_SCRIPT, str(repo), registry.tracking_uri(cfg), uri,
         str(tmp_path / "rows.parquet"), str(tmp_path / "scored.parquet")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "/code/scoring/" in run.stdout  # the artefact's own copy of the scoring code
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    expected = arm_frame(model, rows, cfg.business.margin)
    pd.testing.assert_frame_equal(scored.reset_index(drop=True), expected, check_exact=True)


def test_an_experiment_assigns_every_decision_of_a_batch_to_its_variant(home) -> None:
    """While an experiment runs, a batch logs each decision with the player's variant, at the shares; each
    variant sends what it says; one experiment at a time; a budget is refused while it runs."""
    h = home[0]
    start = ("experiment", "start", "e1", "--variants", "policy=0.4,random=0.2,best_arm=0.2,holdout=0.2",
             "--best-arm", "cashback@10000")  # fmt: skip
    code, out = cli(home, *start)
    assert code == 0, out
    code, out = cli(home, "experiment", "start", "e2", "--variants", "policy=0.5,holdout=0.5")
    assert code != 0 and "'e1' is running" in out
    code, out = cli(home, "experiment", "start", "e3", "--variants", "policy=0.5,bogus=0.5")
    assert code != 0 and "unknown variants ['bogus']" in out
    as_of = pd.Timestamp(json.loads((h / "truth" / "calibration.json").read_text())["as_of"]) - pd.Timedelta(hours=1)
    batch = ("batch", "--model", "challenger", "--out", str(h / "e1.csv"), "--as-of", as_of.isoformat())
    code, out = cli(home, *batch, "--budget", "100000")
    assert code == 2 and "experiment e1 is running" in out
    code, out = cli(home, *batch)
    assert code == 0, out
    logged = pd.read_sql(
        "SELECT * FROM decisions WHERE experiment = 'e1'", f"sqlite:///{h / 'rekindle.db'}"
    ).drop_duplicates("player_id")
    decided = pd.read_csv(h / "e1.csv")
    assert len(logged) == len(decided) > 500
    shares = logged["variant"].value_counts(normalize=True)
    for variant, share in {"policy": 0.4, "random": 0.2, "best_arm": 0.2, "holdout": 0.2}.items():
        assert abs(shares[variant] - share) < 4 * np.sqrt(share * (1 - share) / len(logged)), (variant, shares)
    live = logged[~logged["reason"].str.startswith(("frequency cap", "not a candidate", "self", "blocked"))]
    assert (live.loc[live["variant"] == "holdout", "event_type"] == "none").all()
    best = live[live["variant"] == "best_arm"]
    assert ((best["event_type"] == "cashback") & (best["reward"] == 10_000)).mean() > 0.9
    assert live.loc[live["variant"] == "random", "event_type"].nunique() >= 4
    code, out = cli(home, "experiment", "status", "e1")
    assert code == 0 and "running" in out and "sample ratio" in out and "as configured" in out, out
    code, out = cli(home, "experiment", "stop", "e1")
    assert code == 0, out
    code, out = cli(home, "experiment", "stop", "e1")
    assert code != 0 and "stopped, not running" in out
    code, out = cli(home, "experiment", "start", "e1", "--variants", "policy=0.5,holdout=0.5")
    assert code != 0 and "already exists" in out
