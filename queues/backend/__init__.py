"""The one Redis backend of the broker: the only code that speaks redis-py.

Lua scripts live beside it as ``.lua`` files (``scripts.py`` loads them and calls them by SHA).
"""
