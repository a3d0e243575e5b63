"""The test session's order and the lifetime of what it starts.

Order, module by module (the order inside a module is kept):
1. modules with only unit tests (no ``slow`` or ``cluster`` test, no in-process Ray);
2. the cluster modules, in ``CLUSTER_MODULES`` order, the golden run's first;
3. the other modules (those with a ``slow`` test).

The golden run (tests/golden.py) is started in the background as the session's first test
starts, when the session has a test that reads it: its two jobs run on their own cluster
while the unit tests run here, and its first reader waits for it. Every other cluster
starts only when its first test does, and each session resource registered with
:func:`release_after_last_use` is released once the last collected test that uses it is
torn down: an idle cluster's processes (GCS, raylets, dashboards, idle workers) take CPU
from every test beside it on a 2-core machine.
"""
from __future__ import annotations

S3_BUCKET = "ganc-test"
CLUSTER_MODULES = ("test_cluster_isolated", "test_autoscale", "test_faults", "test_multinode")
HEAVY_MARKERS = ("slow", "cluster")
HEAVY_FIXTURES = ("ray_local",)      # an in-process Ray: kept away from the clusters

_RELEASE: dict = {}
_LAST_USER: dict = {}


def release_after_last_use(name: str, release) -> None:
    """Call ``release`` once the last collected test that uses fixture ``name`` is torn
    down (the fixture's own finalizer must tolerate it having run)."""
    _RELEASE[name] = release


def module_of(item) -> str:
    return item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")


def order(items: list) -> None:
    """Sort ``items`` in place as the module docstring says; note each fixture's last user."""
    heavy = {module_of(i) for i in items
             if any(i.get_closest_marker(m) for m in HEAVY_MARKERS)
             or any(f in getattr(i, "fixturenames", ()) for f in HEAVY_FIXTURES)}

    def rank(item) -> int:
        module = module_of(item)
        if module in CLUSTER_MODULES:
            return 1 + CLUSTER_MODULES.index(module)
        return 1 + len(CLUSTER_MODULES) if module in heavy else 0

    items.sort(key=rank)              # stable: the order inside each module is kept
    _LAST_USER.clear()
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            _LAST_USER[name] = item.nodeid


def release_finished(item) -> None:
    """Release what ``item`` was the last user of."""
    for name in [n for n in _RELEASE if _LAST_USER.get(n) == item.nodeid]:
        _RELEASE.pop(name)()


def uses(items: list, fixture: str) -> bool:
    return any(fixture in getattr(i, "fixturenames", ()) for i in items)
