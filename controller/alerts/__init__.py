"""The alerts service: rules over task, worker and queue events, sent through Apprise."""
