"""Fixtures of the docker-compose scenarios (issue 5): the four-node cluster
of docker/compose.yml in containers built FROM scratch from this build,
driven by docker/cluster.py (docker/env underneath, the same script people
use by hand).  Whatever a scenario does, teardown removes the containers,
networks, volumes and image it made, and the Docker engine if it started
one."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "docker"))

import cluster  # noqa: E402
import helpers  # noqa: E402

SITE = cluster.SITE
NODES = cluster.SMALL
# s: the lifetime of what the test CA issues (pebble's certificateValidityPeriod);
# renewal is due when a third remains, 60-63 s after issuance
ACME_VALIDITY = 90


@pytest.fixture(scope="session")
def certsync_bin():
    b = os.environ.get("CERTSYNC")
    if not b or not os.access(b, os.X_OK):
        pytest.fail("CERTSYNC must name the built certsync (ctest sets it)", pytrace=False)
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def env(certsync_bin):
    c = cluster.Cluster(certsync_bin, acme_validity=ACME_VALIDITY)
    left = []
    try:
        c.start()
        yield c
    finally:
        if os.path.isdir(c.generated):
            print(c.logs())
        left = c.stop()
    assert not left, "containers left behind: %s" % left


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return helpers.PKI(tmp_path_factory.mktemp("pki"))
