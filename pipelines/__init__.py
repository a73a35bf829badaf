"""Batch jobs: backfill, validation, training-set building, training, evaluation, promotion."""
