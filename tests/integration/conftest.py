"""Fixtures of the certsync integration tests.

- certsync_bin: path of the built `certsync` ($CERTSYNC; ctest sets it).
- pki: session-wide test PKI made with openssl and GnuTLS certtool (helpers.PKI).
- agent_factory / module_agent_factory: start real agents, each with its own
  configuration, data_dir, control socket (short /tmp path) and passphrase
  file (0600); at teardown every agent still running gets SIGTERM by PID and
  must exit 0 (SIGKILL by PID after 30 s, reported as a failure).
"""

import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402


@pytest.fixture(scope="session")
def certsync_bin():
    b = os.environ.get("CERTSYNC")
    if not b:
        pytest.fail("CERTSYNC is not set: ctest sets it; by hand run "
                    "CERTSYNC=/path/to/build/certsync pytest-3 -q", pytrace=False)
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("CERTSYNC=%s is not an executable file" % b, pytrace=False)
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return helpers.PKI(tmp_path_factory.mktemp("pki"))


class AgentFactory:
    def __init__(self, binary, base):
        self.binary = binary
        self.base = str(base)
        self.agents = []
        self.sock_dirs = []

    def __call__(self, start=True, workdir=None, **kw):
        n = len(self.agents) + 1
        wd = workdir or os.path.join(self.base, "agent%d-%s" % (n, kw.get("name", "primary")))
        a = helpers.Agent(self.binary, wd, **kw)
        self.agents.append(a)
        self.sock_dirs.append(a.sock_dir)
        if start:
            a.start()
        return a

    def teardown(self):
        problems = []
        for a in self.agents:
            if a.running:
                rc = a.stop(signal.SIGTERM, timeout=30)
                if rc != 0:
                    problems.append("agent %s (%s): SIGTERM → exit %r, expected 0; stderr tail:\n%s"
                                    % (a.name, a.config, rc, a.stderr()[-2000:]))
        for d in self.sock_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def agent_factory(certsync_bin, tmp_path):
    f = AgentFactory(certsync_bin, tmp_path)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def module_agent_factory(certsync_bin, tmp_path_factory):
    f = AgentFactory(certsync_bin, tmp_path_factory.mktemp("agents"))
    yield f
    f.teardown()


@pytest.fixture
def cli_bin(certsync_bin):
    """Runs the command without a configuration: cli_bin(*args, json=..., check=...)."""
    def run(*args, json=True, check=None, env=None):
        return helpers.run_certsync(certsync_bin, list(args), json=json, check=check, env=env)
    return run


@pytest.fixture
def configured_agent(certsync_bin, tmp_path):
    """Makes helpers.ConfiguredAgent single nodes (no peers):
    configured_agent(node_extra=..., sections=..., start=True)."""
    made = []

    def make(start=True, **kw):
        a = helpers.ConfiguredAgent(certsync_bin, tmp_path / ("agent%d" % len(made)), peers=(),
                                    **kw)
        made.append(a)
        if start:
            a.start()
        return a
    yield make
    for a in made:
        if a.running:
            assert a.stop() == 0, a.stderr()[-2000:]
