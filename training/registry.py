"""MLflow tracking and registry: where runs are logged and models registered.

The tracking store and artefacts live under the home (``sqlite:///<home>/mlflow.db``
and ``<home>/mlartifacts``) unless ``training.tracking_uri`` (or
``MLFLOW_TRACKING_URI``) names a server or a PostgreSQL backend.

A model is logged as data (:mod:`scoring.artefact`: LightGBM text boosters and
one JSON document) inside an MLflow pyfunc logged as code
(:mod:`scoring.mlflow_model`), with the :mod:`scoring` package in its
``code`` folder: no pickle, so a model keeps loading when the code that
trained it moves. ``predict(frame, params={"margin": m})`` returns every arm's
expected values for every row; the policy is applied by whoever uses the
model. Registered versions carry aliases: a new model becomes ``challenger``;
``champion`` moves only when :mod:`training.promotion` says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

import scoring
from core.config import Config
from core.errors import RekindleError
from scoring import artefact
from scoring.ensemble import ResponseEnsemble, arm_frame

CHAMPION = "champion"
CHALLENGER = "challenger"
CANARY = "canary"  # a promoted model serving the canary share of an experiment before it takes all traffic
BEST_ARM_TAG = "best_single_arm"  # the best single arm as the evaluation estimated it (experiments' best_arm)
FALLBACK_TAG = "fallback_rule"  # JSON {segment or "all": arm}: what serving sends when no champion is trusted


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


SCORING_CODE = Path(scoring.__file__).resolve().parent  # travels inside every artefact (code_paths)
REQUIREMENTS = ["mlflow", "lightgbm", "pandas", "numpy", "scipy"]


def log_model(model: ResponseEnsemble, example: pd.DataFrame, *, name: str = "scorer") -> str:
    """Log ``model`` in the active run as a pyfunc (its files, the scoring code, a signature and an input
    example of ``example``'s rows); returns its model URI."""
    import mlflow
    from mlflow.models import infer_signature

    # the project's environment is uv's, without pip: MLflow says so on every model; the requirements are ours
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    cols = [c for c in model.input_columns() if c in example]
    sample = example[cols].head(5).reset_index(drop=True)
    margin = float(model.meta.get("margin", 0.3))
    with tempfile.TemporaryDirectory() as tmp:
        files = artefact.save(model, Path(tmp) / artefact.PYFUNC_ARTEFACT)
        output = arm_frame(model, sample, margin)
        with warnings.catch_warnings():  # ids, integer features, rewards and money are whole numbers on purpose
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
            signature = infer_signature(sample, output, params={"margin": margin})
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(SCORING_CODE / "mlflow_model.py"),
            artifacts={artefact.PYFUNC_ARTEFACT: str(files)},
            code_paths=[str(SCORING_CODE)],
            signature=signature,
            input_example=sample,
            pip_requirements=REQUIREMENTS,
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


def remove_alias(name: str, alias: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # not set: nothing to remove
        MlflowClient().delete_registered_model_alias(name, alias)


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


def resolve(name: str, ref: str | None) -> tuple[str, str]:
    """``(URI, version label)`` of a model reference: an alias resolves to the version it points to now
    (``models:/rekindle-response/3``, ``rekindle-response/3``), so a decision records which model made it."""
    uri = model_uri(name, ref)
    if uri.startswith("models:/") and "@" in uri:
        model, alias = uri[len("models:/") :].split("@", 1)
        version = alias_version(model, alias)
        if version is None:
            raise RegistryError(f"no version of {model} has the alias {alias!r}: run `rekindle train`")
        return f"models:/{model}/{version}", f"{model}/{version}"
    if uri.startswith("models:/"):
        return uri, uri[len("models:/") :]
    return uri, uri


def load_model(uri: str) -> ResponseEnsemble:
    """The response model behind a model URI, rebuilt from its files (what serving and batch call)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from exc
    files = local / "artifacts" / artefact.PYFUNC_ARTEFACT
    if not files.is_dir():
        raise RegistryError(
            f"model {uri} was registered by an older Rekindle (a pickled scorer, which this version no longer "
            "loads): retrain it with `rekindle train`"
        )
    try:
        return artefact.load(files)
    except artefact.ArtefactError as exc:
        raise RegistryError(f"cannot load model {uri}: {exc}; retrain it with `rekindle train`") from exc


def canary_rule(name: str, version: int) -> dict[str, str] | None:
    """What the canary serves: None for its own policy (it was promoted), else the fallback rule it was
    canaried with (no champion to replace, a new rule to try)."""
    import json

    if (version_tag(name, version, "promotion") or "").startswith("promoted"):
        return None
    tag = version_tag(name, version, FALLBACK_TAG)
    return json.loads(tag) if tag else None


def version_tag(name: str, version: int, tag: str) -> str | None:
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(name, str(version)).tags.get(tag)
