"""Automation on top of queues: clone/enqueue helpers, pipelines, schedules, triggers."""
