"""Automation on top of queues: pipelines (Python DAG, decorators), controllers, caching."""

from .decorators import component, pipeline
from .pipeline import Pipeline

__all__ = ["Pipeline", "component", "pipeline"]
