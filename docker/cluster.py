"""cluster.py — drives the compose cluster of docker/compose.yml from the
host through docker/env, for the scenario tests (tests/docker) and the
propagation benchmark (bench/docker_propagation.py): a Docker engine started
when none runs (and later stopped, by its PID), the image, the nodes'
configurations, `certsync` inside a node, the control sockets and the TLS
ports published on 127.0.0.1.  Standard library only."""

import base64
import json
import os
import shutil
import socket
import ssl
import hashlib
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from helpers import free_port  # noqa: E402 (ports a restarted container can bind again)
ENV_SCRIPT = os.path.join(HERE, "env")
SITE = "support.example.test"
SMALL = ("primary", "backup", "tn1", "tn2")
LARGE = SMALL + ("tn3", "tn4", "tn5", "tn6")
CMD_TIMEOUT = 180


def served_id(port, sni, timeout=5):
    """SHA-256 hex of the leaf certificate 127.0.0.1:port serves for sni
    (None: no SNI), or None when the handshake fails."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as s:
                return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
    except (OSError, ssl.SSLError):
        return None


def control_request(path, cmd, args, timeout=60):
    """One request on a certsync control socket (a JSON line each way):
    the answer's JSON."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise OSError("%s closed without answering %s" % (path, cmd))
            answer += chunk
    return json.loads(answer)


def import_args(*paths, wait="none"):
    """The arguments of an import request carrying the files themselves."""
    return {"files": [{"name": os.path.basename(p),
                       "data": base64.b64encode(open(p, "rb").read()).decode()} for p in paths],
            "wait": wait}


class Cluster:
    """docker/env with a project, folders and ports of its own; start() and
    stop() bring up and remove everything it made."""

    def __init__(self, binary, large=False, prefix="certsync-test", acme_validity=None):
        # Unix socket paths are short: the engine's folder lives under /tmp.
        self.work = tempfile.mkdtemp(prefix="cs-dock-", dir="/tmp")
        self.nodes = LARGE if large else SMALL
        self.project = "%s-%d" % (prefix, os.getpid())
        self.ports = {n: free_port() for n in self.nodes}
        self.generated = os.path.join(self.work, "generated")
        self.vars = dict(os.environ, CERTSYNC=binary, CERTSYNC_PROJECT=self.project,
                         CERTSYNC_GENERATED=self.generated, CERTSYNC_LARGE="1" if large else "0",
                         CERTSYNC_ENGINE_DIR=os.path.join(self.work, "engine"),
                         CERTSYNC_IMAGE="certsync:%s-%d" % (prefix, os.getpid()),
                         CERTSYNC_PEBBLE_IMAGE="certsync-pebble:%s-%d" % (prefix, os.getpid()))
        for n, p in self.ports.items():
            self.vars["CERTSYNC_PORT_" + n.upper()] = str(p)
        # the test CA's management ports: pebble's roots, challtestsrv's records
        self.pebble_port, self.challtestsrv_port = free_port(), free_port()
        self.vars["CERTSYNC_PORT_PEBBLE"] = str(self.pebble_port)
        self.vars["CERTSYNC_PORT_CHALLTESTSRV"] = str(self.challtestsrv_port)
        if acme_validity:
            self.vars["CERTSYNC_ACME_VALIDITY"] = str(int(acme_validity))
        self.started_engine = False

    def start(self):
        up = self.run("engine-up", timeout=120)
        if b"started dockerd" in up.stdout:
            self.started_engine = True
            self.vars["DOCKER_HOST"] = "unix://" + os.path.join(self.work, "engine",
                                                               "docker.sock")
        self.run("up", timeout=600)

    def stop(self):
        """Removes the containers, networks, volumes and image, then the
        engine if start() started it; returns the containers left behind."""
        try:
            self.run("down", check=False, timeout=300)
            self.docker("image", "rm", "-f", self.vars["CERTSYNC_IMAGE"],
                        self.vars["CERTSYNC_PEBBLE_IMAGE"], check=False)
            return self.docker("ps", "-a", "-q", "--filter", "label=com.docker.compose.project="
                               + self.project, check=False).split()
        finally:
            if self.started_engine:
                self.run("engine-down", check=False, timeout=120)
            shutil.rmtree(self.work, ignore_errors=True)

    def run(self, *args, check=True, timeout=CMD_TIMEOUT, input=None):
        p = subprocess.run([ENV_SCRIPT] + list(args), env=self.vars, input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("docker/env %s failed (%d):\n%s\n%s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace")[-3000:],
                p.stderr.decode(errors="replace")[-3000:]))
        return p

    def docker(self, *args, check=True, timeout=CMD_TIMEOUT):
        p = subprocess.run(["docker"] + list(args), env=self.vars, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("docker %s failed (%d): %s" % (
                " ".join(args), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
        return p.stdout.decode()

    def compose(self, *args, check=True, timeout=CMD_TIMEOUT):
        return self.run("compose", *args, check=check, timeout=timeout)

    def health(self, node):
        """The container's healthcheck state (`certsync status --check`)."""
        return self.docker("inspect", "-f", "{{.State.Health.Status}}",
                           self.container(node)).strip()

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
        return served_id(self.ports[node], sni)

    def control_socket(self, node):
        """The node's control socket, as the host sees it (docker/env
        mounts each node's /run/certsync from its generated folder)."""
        return os.path.join(self.generated, node, "run", "control.sock")

    def request(self, node, cmd, args, timeout=60):
        return control_request(self.control_socket(node), cmd, args, timeout)

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout.decode(
            errors="replace")

    def address(self, node, network="cluster"):
        """node's address on one of the project's networks."""
        return self.docker("inspect", "-f", '{{(index .NetworkSettings.Networks "%s_%s").IPAddress}}'
                           % (self.project, network), self.container(node)).strip()

    def challtest(self, path, body):
        """A request to challtestsrv's management API (its DNS records)."""
        req = urllib.request.Request("http://127.0.0.1:%d/%s" % (self.challtestsrv_port, path),
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 200:
                raise AssertionError("challtestsrv %s: HTTP %d" % (path, r.status))

    def add_a(self, host, address):
        """challtestsrv's DNS, pebble's only resolver, answers address for host."""
        self.challtest("clear-a", {"host": host})
        self.challtest("add-a", {"host": host, "addresses": [address]})

    def pebble_root(self):
        """The root pebble issues under now, from its management port (HTTPS
        with the certificate docker/env made: its CA is in the generated folder)."""
        ctx = ssl.create_default_context(cafile=os.path.join(self.generated, "pebble", "ca.pem"))
        with urllib.request.urlopen("https://127.0.0.1:%d/roots/0" % self.pebble_port,
                                    context=ctx, timeout=10) as r:
            return r.read().decode()
