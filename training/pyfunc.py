"""The scorer as an MLflow pyfunc model (imported by :mod:`training.registry` when it logs or loads one).

``predict(frame, params={...})``: ``output`` "decisions" (default: one per row)
or "arms" (every arm of every row); ``objective``, ``margin`` and ``budget``
(< 0: none) override the trained defaults. Money comes out in whole KRW.
"""

from __future__ import annotations

import pickle
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from training.scorer import Scorer, round_money


class ScorerModel(PythonModel):  # type: ignore[misc]
    """Loads the pickled :class:`training.scorer.Scorer` artefact and serves its decisions."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["scorer"], "rb") as fh:
            self.scorer: Scorer = pickle.load(fh)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        p = params or {}
        margin = p.get("margin")
        margin = None if margin is None or float(margin) < 0 else float(margin)
        if p.get("output", "decisions") == "arms":
            return round_money(self.scorer.arm_table(model_input, margin=margin))
        budget = p.get("budget")
        budget = None if budget is None or float(budget) < 0 else float(budget)
        objective = p.get("objective") or None
        return round_money(self.scorer.decide(model_input, objective=objective, budget=budget, margin=margin))
