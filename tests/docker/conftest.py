"""Fixtures of the docker-compose scenarios (issue 5): a Docker engine
(started here when none runs, and then stopped here, by its PID), the
certsync image built FROM scratch from this build, and the four-node cluster
of docker/compose.yml.  Everything goes through docker/env, the same script
people use by hand.  Whatever a scenario does, teardown removes the
containers, networks and volumes of the project, and the engine if it was
started here."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import helpers  # noqa: E402

ENV_SCRIPT = os.path.join(ROOT, "docker", "env")
SITE = "support.example.test"
NODES = ("primary", "backup", "tn1", "tn2")
CMD_TIMEOUT = 180


class Env:
    """docker/env with this run's project, folders and ports."""

    def __init__(self, binary, work):
        self.work = work
        self.project = "certsync-test-%d" % os.getpid()
        self.ports = {n: helpers.free_port() for n in NODES}
        self.vars = dict(os.environ, CERTSYNC=binary, CERTSYNC_PROJECT=self.project,
                         CERTSYNC_GENERATED=os.path.join(work, "generated"),
                         CERTSYNC_ENGINE_DIR=os.path.join(work, "engine"),
                         CERTSYNC_IMAGE="certsync:test-%d" % os.getpid())
        for n, p in self.ports.items():
            self.vars["CERTSYNC_PORT_" + n.upper()] = str(p)
        self.started_engine = False

    def run(self, *args, check=True, timeout=CMD_TIMEOUT, input=None):
        p = subprocess.run([ENV_SCRIPT] + list(args), env=self.vars, input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("docker/env %s failed (%d):\n%s\n%s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace")[-3000:],
                p.stderr.decode(errors="replace")[-3000:]))
        return p

    def docker(self, *args, check=True, timeout=CMD_TIMEOUT):
        env = dict(self.vars)
        sock = os.path.join(self.vars["CERTSYNC_ENGINE_DIR"], "docker.sock")
        if self.started_engine:
            env["DOCKER_HOST"] = "unix://" + sock
        p = subprocess.run(["docker"] + list(args), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("docker %s failed (%d): %s" % (
                " ".join(args), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
        return p.stdout.decode()

    def compose(self, *args, check=True, timeout=CMD_TIMEOUT):
        return self.run("compose", *args, check=check, timeout=timeout)

    def container(self, node):
        return self.compose("ps", "-q", node).stdout.decode().strip()

    def certsync(self, node, *args, want=0, timeout=CMD_TIMEOUT):
        """`certsync --json ARGS` inside node; asserts the exit code."""
        p = self.run("certsync", node, "--json", *args, check=False, timeout=timeout)
        out = p.stdout.decode(errors="replace")
        if want is not None and p.returncode != want:
            raise AssertionError("certsync %s on %s: exit %d, wanted %d\n%s\n%s" % (
                " ".join(args), node, p.returncode, want, out[-3000:],
                p.stderr.decode(errors="replace")[-3000:]))
        try:
            data = json.loads(out) if out.strip() else None
        except ValueError:
            data = None
        return p.returncode, data, p.stderr.decode(errors="replace")

    def status(self, node):
        return self.certsync(node, "status")[1]

    def copy_in(self, node, path):
        """Copies a host file into node's /tmp, readable by the image's user."""
        dest = "/tmp/" + os.path.basename(path)
        os.chmod(path, 0o644)
        self.docker("cp", path, "%s:%s" % (self.container(node), dest))
        return dest

    def served_id(self, node, sni):
        return helpers.s_client_id(self.ports[node], sni)

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout.decode(
            errors="replace")


@pytest.fixture(scope="session")
def certsync_bin():
    b = os.environ.get("CERTSYNC")
    if not b or not os.access(b, os.X_OK):
        pytest.fail("CERTSYNC must name the built certsync (ctest sets it)", pytrace=False)
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def env(certsync_bin):
    # Unix socket paths are short: the engine's folder lives under /tmp.
    work = tempfile.mkdtemp(prefix="cs-dock-", dir="/tmp")
    e = Env(certsync_bin, work)
    try:
        up = e.run("engine-up", timeout=120)
        if b"started dockerd" in up.stdout:
            e.started_engine = True
            e.vars["DOCKER_HOST"] = "unix://" + os.path.join(work, "engine", "docker.sock")
        e.run("up", timeout=600)
        yield e
    finally:
        try:
            if os.path.exists(os.path.join(work, "generated")):
                print(e.logs())
            e.run("down", check=False, timeout=300)
            e.docker("image", "rm", "-f", e.vars["CERTSYNC_IMAGE"], check=False)
            left = e.docker("ps", "-a", "-q", "--filter", "label=com.docker.compose.project="
                            + e.project, check=False).split()
            assert not left, "containers left behind: %s" % left
        finally:
            if e.started_engine:
                e.run("engine-down", check=False, timeout=120)
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return helpers.PKI(tmp_path_factory.mktemp("pki"))
