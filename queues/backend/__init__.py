"""The one Redis backend of the broker: the only code that speaks redis-py.

Its vocabulary, one module per area: ``records`` (task records, their indexes, and ``change``,
which executes a transition of ``lifecycle.TABLE`` as one transaction), ``queues`` (claim, push,
move, heads, the queue registry's storage), ``streams`` (events, logs, metrics, firings, the web
app's async reads), ``fleet`` (workers, claims, the reapers' lock, GPU holds, services),
``documents`` (pipeline runs, step cache, pipeline files, schedules, trigger claims, web tokens
and sessions) and ``server``. Lua scripts are ``.lua`` files beside it, loaded once and called by
SHA (``scripts``). ``tests/test_backend_boundary.py`` keeps redis-py calls and Lua inside.
"""
