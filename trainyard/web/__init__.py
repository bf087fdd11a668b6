"""The web app and HTTP API (``trainyard web``): one ASGI process serving both."""

from .app import create_app

__all__ = ["create_app"]
