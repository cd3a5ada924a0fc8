"""Everything that talks to another system (MLflow, Optuna, scikit-learn, NVML, codecarbon)."""
