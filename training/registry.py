"""MLflow tracking and registry: where runs are logged and models registered.

The tracking store and artefacts live under the home (``sqlite:///<home>/mlflow.db``
and ``<home>/mlartifacts``) unless ``training.tracking_uri`` (or
``MLFLOW_TRACKING_URI``) names a server or a PostgreSQL backend.

The scorer (:class:`training.scorer.Scorer`) is logged as one pyfunc model with
a signature and an input example. ``predict(frame, params={...})`` returns one
decision per row (``output="decisions"``, the default) or every arm of every
row (``output="arms"``); ``objective``, ``margin`` and ``budget`` (< 0: none)
override the trained defaults. Registered versions carry aliases: a new model
becomes ``challenger``; ``champion`` moves only through :func:`promote`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from core.config import Config
from core.errors import RekindleError
from training.scorer import Scorer, round_money

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(RekindleError, ValueError):
    """A model, alias or run asked for does not exist."""


def tracking_uri(cfg: Config) -> str:
    """``training.tracking_uri``, ``MLFLOW_TRACKING_URI``, or SQLite under the home; a database URL
    (not a tracking server's http://) gets the installed psycopg 3 driver for PostgreSQL."""
    from platform_db.db import normalise_url

    uri = cfg.training.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{cfg.path('mlflow.db')}"
    return uri if uri.startswith(("http://", "https://", "databricks")) else normalise_url(uri)


@contextmanager
def tracking(cfg: Config) -> Iterator[str]:
    """Point MLflow (tracking and registry) at this home's store and experiment; yields the experiment id.
    The URIs stay set afterwards: every command of the CLI runs in its own process."""
    import mlflow

    cfg.home.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(cfg)
    users = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow also exports the URI as MLFLOW_TRACKING_URI, which the next tracking_uri() would take for the
    # user's choice: another home's store in the same process (a notebook, the tests). Keep the user's.
    if users is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users
    name = cfg.training.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifacts = cfg.path("mlartifacts")
        artifacts.mkdir(parents=True, exist_ok=True)
        exp_id = mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    yield exp_id


def input_columns(scorer: Scorer) -> list[str]:
    """The columns a scorer reads from its input frame."""
    from features.matching import MATCH_KINDS, match_column
    from training.design import PER_TYPE

    types = [t for t in scorer.design.event_types if t != "none"]
    cols = ["player_id", *scorer.design.player_numeric, *scorer.design.categorical_levels]
    cols += [f"{name}_{t}" for name in PER_TYPE for t in types if f"{name}_{t}" not in cols]
    if scorer.design.use_match:
        cols += [match_column(k, t) for k in MATCH_KINDS for t in types]
    return list(dict.fromkeys(cols))


def log_scorer(scorer: Scorer, example: pd.DataFrame, *, name: str = "scorer") -> str:
    """Log ``scorer`` in the active run as a pyfunc model; returns its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from training.pyfunc import ScorerModel

    cols = [c for c in input_columns(scorer) if c in example]
    sample = example[cols].head(5).reset_index(drop=True)
    params = {"output": "decisions", "objective": scorer.objective, "margin": float(scorer.margin), "budget": -1.0}
    signature = infer_signature(sample, round_money(scorer.decide(sample)), params=params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scorer.pkl"
        with open(path, "wb") as fh:
            pickle.dump(scorer, fh, protocol=pickle.HIGHEST_PROTOCOL)
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=ScorerModel(),
            artifacts={"scorer": str(path)},
            signature=signature,
            input_example=sample,
            pip_requirements=["mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "scipy"],
        )
    return str(info.model_uri)


def register(model_uri: str, name: str, *, tags: dict[str, str] | None = None) -> int:
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags=tags)
    return int(mv.version)


def alias_version(name: str, alias: str) -> int | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return int(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(cfg: Config) -> int | None:
    """The version of the configured model that is champion, if any."""
    with tracking(cfg):
        return alias_version(cfg.training.model_name, CHAMPION)


def set_alias(name: str, alias: str, version: int) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


def version_tags(name: str, version: int, tags: dict[str, str]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)


def model_uri(name: str, ref: str | None) -> str:
    """``ref``: an alias (champion, challenger), a version number, or a full ``models:/`` or ``runs:/`` URI."""
    if ref is None:
        ref = CHAMPION
    if ref.startswith(("models:/", "runs:/")):
        return ref
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def load_scorer(uri: str) -> Scorer:
    """The scorer behind a pyfunc model URI (what serving and batch call)."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from exc
    return model.unwrap_python_model().scorer  # type: ignore[no-any-return]
