"""Training: Optuna-tuned LightGBM response and ROI models logged in MLflow (issue 4)."""
