"""Model definitions, training and evaluation code, MLflow registry helpers."""
