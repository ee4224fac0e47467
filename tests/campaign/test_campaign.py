"""A few short schedules of the fault campaign (campaign.py), with fixed
seeds, on every ctest run: each must keep every promise an answer made
(see campaign.py).  Needs root for the network namespaces."""

import os
import subprocess

import pytest

import campaign

# Fixed seeds whose schedules hold, between them, every kind of fault.
SEEDS = (22, 24, 29)
DURATION = 20.0


def test_the_seeds_cover_every_kind():
    kinds = {f["kind"] for s in SEEDS for f in campaign.make_schedule(s, DURATION)}
    assert kinds == set(campaign.KINDS)


def test_a_schedule_is_a_function_of_its_seed():
    assert campaign.make_schedule(5, DURATION) == campaign.make_schedule(5, DURATION)
    assert campaign.make_schedule(5, DURATION) != campaign.make_schedule(6, DURATION)


@pytest.fixture(scope="session")
def certsync_bin():
    b = os.environ.get("CERTSYNC")
    if not b:
        pytest.fail("CERTSYNC is not set: ctest sets it", pytrace=False)
    p = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if os.geteuid() != 0 or p.returncode != 0:
        pytest.fail("the campaign needs root and `ip netns` (iproute2) to make its network "
                    "namespaces: %s" % p.stderr.decode().strip(), pytrace=False)
    return os.path.abspath(b)


@pytest.mark.parametrize("seed", SEEDS)
def test_schedule(certsync_bin, seed):
    lines = []
    r = campaign.Campaign(certsync_bin, seed, DURATION, log=lines.append).run()
    assert not r["problems"], "\n".join(lines)
    # the schedule did what it is for: changes were answered, faults ran
    assert r["acknowledged"] > 0 and sum(r["fault_counts"].values()) == len(r["faults"])
