"""Comparing run outputs (stage results, plans.json, report.json) without wall times."""

#: Keys that hold wall-clock times, which differ between otherwise identical runs.
TIMING_KEYS = {"seconds", "stages", "time", "wall_s"}


def without_timings(obj):
    """JSON data with every :data:`TIMING_KEYS` entry removed, at any depth."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj
