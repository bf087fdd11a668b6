"""The agent: pulls tasks from queues and runs them (see the worker issue)."""
