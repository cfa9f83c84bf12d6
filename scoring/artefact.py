"""The files of a registered model, and reading them back.

A model directory holds ``model.json`` (format and version, the design, the arm
table, each member's learner, deposit calibration and head files, the metadata)
and one LightGBM text file per head of each member under ``boosters/``. No
pickle: any code that reads this format can score with the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from scoring.design import Design
from scoring.ensemble import ARM_TABLE_COLUMNS, ResponseEnsemble
from scoring.heads import ResponseHeads

FORMAT = "rekindle-response-ensemble"
VERSION = 2  # 2: each member's deposit_factors (None: the deposits head reads the arm's columns)
READABLE = (1, 2)
MODEL_FILE = "model.json"
PYFUNC_ARTEFACT = "response_model"  # the files' name among an MLflow pyfunc's artifacts


class ArtefactError(ValueError):
    """A directory that is not a model of this format (or of a version this code cannot read)."""


def save(model: ResponseEnsemble, directory: str | Path) -> Path:
    """Write ``model`` into ``directory`` (created; it must be empty or new). Returns the directory."""
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise ArtefactError(f"{out} is not empty: a model is written into a new directory")
    (out / "boosters").mkdir(parents=True, exist_ok=True)
    members = []
    for i, member in enumerate(model.members):
        heads = {}
        for head, booster in member.boosters.items():
            rel = f"boosters/m{i}-{head.replace('/', '-')}.txt"
            booster.save_model(str(out / rel))
            heads[head] = rel
        members.append(
            {
                "learner": member.learner,
                "deposit_scale": float(member.deposit_scale),
                "deposit_factors": member.deposit_factors,
                "heads": heads,
            }
        )
    arms = model.arms[list(ARM_TABLE_COLUMNS)]
    document = {
        "format": FORMAT,
        "version": VERSION,
        "design": model.design.to_dict(),
        "arms": [{k: _plain(v) for k, v in row.items()} for row in arms.to_dict("records")],
        "members": members,
        "meta": {k: _plain(v) for k, v in model.meta.items()},
    }
    (out / MODEL_FILE).write_text(json.dumps(document, indent=1, allow_nan=False))
    return out


def load(directory: str | Path) -> ResponseEnsemble:
    """Read a model written by :func:`save`; a directory of another format or version raises ArtefactError."""
    root = Path(directory)
    path = root / MODEL_FILE
    if not path.is_file():
        raise ArtefactError(f"{root} holds no {MODEL_FILE}: not a {FORMAT} model")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtefactError(f"{path} is not JSON: {exc}") from exc
    if document.get("format") != FORMAT or document.get("version") not in READABLE:
        raise ArtefactError(
            f"{path} is format {document.get('format')!r} version {document.get('version')!r}; "
            f"this code reads {FORMAT!r} versions {list(READABLE)}"
        )
    design = Design.from_dict(document["design"])
    arms = pd.DataFrame(document["arms"], columns=list(ARM_TABLE_COLUMNS)).astype(
        {"reward": np.int64, "support": np.int64, "claims": np.int64, "payout": np.float64, "supported": bool}
    )
    members = [
        ResponseHeads(
            m["learner"],
            {head: lgb.Booster(model_file=str(root / rel)) for head, rel in m["heads"].items()},
            float(m["deposit_scale"]),
            m.get("deposit_factors"),  # absent in version 1: the deposits head reads the arm's columns
        )
        for m in document["members"]
    ]
    return ResponseEnsemble(design, arms, members, dict(document.get("meta", {})))


def _plain(v: Any) -> Any:
    """A JSON value of a numpy or pandas scalar (NaN: null)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v
