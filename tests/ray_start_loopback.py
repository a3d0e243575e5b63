"""``ray start`` for a worker node that stays on 127.0.0.1.

Ray 2.60's ``ray start`` refuses to add a node in single-node mode, and in multi-node mode
replaces every loopback address (the head's and the node's own) by the machine's routable
one. This runs ``ray start``'s own command-line entry with multi-node mode on and that
replacement off, so the node joins the loopback head on 127.0.0.1; the processes it starts
run in single-node mode (their environment) and so resolve 127.0.0.1 too.

    python -m tests.ray_start_loopback --address=127.0.0.1:PORT --node-ip-address=127.0.0.1 ...
"""
import sys

import ray._private.ray_constants as ray_constants
import ray._private.services as services

ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host

from ray.scripts.scripts import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = ["ray", "start", *sys.argv[1:]]
    sys.exit(main())
