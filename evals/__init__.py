"""Eval engine: datasets, evaluators and eval runs."""
