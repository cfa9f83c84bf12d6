"""The MLflow pyfunc of a response model, logged as code (MLflow's "models from code": no pickle).

MLflow runs this file when it loads the model; :mod:`scoring` itself travels in
the artefact's ``code`` folder, which MLflow puts first on the import path.
``load_context`` rebuilds the ensemble from the artefact's files.

``predict(frame, params={"margin": m})`` returns one row per (input row, arm):
``player_id, arm, event_type, reward, p_reengage, expected_deposits,
expected_cost, incremental_reengage, incremental_net_value``, money in whole
KRW. The margin defaults to the one the model was trained with. Choosing an
arm is the policy's job (serving), not the model's.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from scoring.artefact import PYFUNC_ARTEFACT, load
from scoring.ensemble import arm_frame


class ResponseModelPyfunc(PythonModel):  # type: ignore[misc]
    """Rebuilds the ensemble from the files and answers with every arm's expected values."""

    def load_context(self, context: Any) -> None:
        self.model = load(context.artifacts[PYFUNC_ARTEFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        margin = (params or {}).get("margin")
        if margin is None or float(margin) <= 0:
            margin = self.model.meta.get("margin", 0.3)
        return arm_frame(self.model, model_input, float(margin))


set_model(ResponseModelPyfunc())
