"""The response model at run time: its artefact format and the code that scores with it.

A registered model is data: LightGBM boosters in LightGBM's own text format and
one JSON document (the design of the model matrix, the arms, the ensemble's
members and their deposit calibration, the training context). This package
rebuilds the scorer from those files and scores frames of player features for
every arm. It imports nothing of the rest of Rekindle (numpy, pandas, scipy and
LightGBM only), so a copy of it travels inside every MLflow artefact
(``code_paths``) and a model keeps loading when the code that trained it is
renamed, moved or gone.

- :mod:`.design`: the columns of the model matrix and how to fill them from a frame;
- :mod:`.heads`: one member's LightGBM heads and its per-arm predictions;
- :mod:`.ensemble`: the members together: point predictions and their spread;
- :mod:`.artefact`: writing and reading the files (format version checked);
- :mod:`.mlflow_model`: the MLflow pyfunc, logged as code.

The policy (which arm to send) is not part of the model: serving and batch apply it.
"""
