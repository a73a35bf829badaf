"""Baseline stream processors for the benchmark: what a user would write instead of our Spark job."""
