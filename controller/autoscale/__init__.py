"""The autoscaler service: workers started and stopped to follow the queues."""
