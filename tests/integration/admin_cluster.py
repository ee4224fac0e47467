"""admin_cluster.py — a running two-node cluster whose primary serves the
admin listener, for the tests of the status page and the primary's checks."""

import contextlib

from helpers import free_port, init_cluster


@contextlib.contextmanager
def admin_cluster(binary, site, alerts=None):
    """A running primary + backup cluster whose primary serves admin_listen
    and, with alerts, has those [alerts] lines: yields (nodes, admin port),
    stops the nodes still running at the end."""
    nodes = init_cluster(binary, (("primary", "primary"), ("backup", "backup")), site=site)
    port = free_port()
    primary = nodes[0]
    primary.generated = primary.generated.replace(
        "\n[cluster]", "admin_listen = 127.0.0.1:%d\n\n[cluster]" % port, 1)
    if alerts is not None:
        primary.generated += "\n[alerts]\n" + alerts
    primary.write_config()
    for n in nodes:
        n.start(wait=False)
    try:
        for n in nodes:
            n.wait_ready()
        yield nodes, port
    finally:
        for n in nodes:
            if n.running:
                n.stop()
