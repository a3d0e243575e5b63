#!/usr/bin/env bash
# `make test`: every test, as two pytest sessions side by side on this machine's cores:
#   - the cluster tier (`-m cluster`: the golden run on the isolated cluster, autoscaling,
#     faults, two-node refusals), whose time is mostly Ray processes waiting on each other;
#     plus a few slow in-process modules marked `beside` (to fill that session's waits, so
#     the two sessions end at about the same time);
#   - everything else (`-m "not cluster and not beside"`: unit tests, then the slow
#     in-process tests).
# One session alone keeps about 1.2 of the 2 cores busy; side by side they keep both.
# The rest's output streams here; the cluster tier's goes to a log file (named at the start)
# and is printed once it ends. Exits 0 only if both sessions pass (a session that collects
# no test, e.g. `PYTEST_ARGS=tests/test_config.py`, counts as passing).
#
# Usage: tests/run_tiers.sh PYTHON [pytest args...]
set -uo pipefail
py=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# Under CI a missing ../shared stops everything in one line before either session starts
# (tests/conftest.py stops a single session the same way).
if [ "${CI:-}" = "true" ] && [ ! -d "$repo/../shared" ]; then
    echo "CI: the shared data folder $(cd "$repo/.." && pwd)/shared is missing (../shared beside the repository)" >&2
    exit 1
fi

log=$(mktemp /tmp/ganc-cluster-tier.XXXXXX.log)
echo "make test: the cluster tier runs beside this session; its output: $log"
"$py" -m pytest -q -m "cluster or beside" -p no:cacheprovider "$@" > "$log" 2>&1 &
cluster_pid=$!
trap 'kill -INT $cluster_pid 2>/dev/null; wait $cluster_pid 2>/dev/null; exit 130' INT TERM

"$py" -m pytest -q -m "not cluster and not beside" "$@"
rest=$?
wait $cluster_pid
cluster=$?
trap - INT TERM

echo
echo "==================== the cluster tier (pytest -m 'cluster or beside', run beside the above) ===================="
cat "$log"
rm -f "$log"
ok() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }   # 5: the selection held no test of the tier
echo "make test: the rest exited $rest, the cluster tier exited $cluster"
if ok "$rest" && ok "$cluster" && ! { [ "$rest" -eq 5 ] && [ "$cluster" -eq 5 ]; }; then
    exit 0
fi
[ "$rest" -ne 0 ] && [ "$rest" -ne 5 ] && exit "$rest"
[ "$cluster" -ne 0 ] && [ "$cluster" -ne 5 ] && exit "$cluster"
exit 5
