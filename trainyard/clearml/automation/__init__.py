"""``clearml.automation``: pipelines, schedulers and the optimiser."""

from __future__ import annotations

from ..errors import refuse_unknown


def __getattr__(name: str):
    if name in ("PipelineController", "PipelineDecorator"):
        from . import controller

        return getattr(controller, name)
    refuse_unknown("automation", name)
