"""``clearml.automation.optuna``: the Optuna strategy."""

from __future__ import annotations

from ...controller.hpo import OptimizerOptuna

__all__ = ["OptimizerOptuna"]
