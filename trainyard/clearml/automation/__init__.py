"""``clearml.automation``: pipelines, schedulers and the optimiser."""

from __future__ import annotations

from ..errors import refuse_unknown
from .controller import PipelineController, PipelineDecorator

__all__ = ["PipelineController", "PipelineDecorator"]


def __getattr__(name: str):
    refuse_unknown("automation", name)
