"""A do-nothing job function for the benchmarks (RQ imports it by its dotted name)."""


def noop(*args):
    return None
