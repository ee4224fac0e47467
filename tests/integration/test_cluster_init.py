"""`certsync cluster init`: every node's folder with a configuration that
names every peer (its key, endpoints), a key pair and the shared passphrase
file, written all or nothing.  Bad input writes nothing at all."""

import configparser
import json
import os
import stat

import pytest

import helpers

SITE = "support.example.test"


def node(name, role, port):
    return "%s=%s,%s.example.test,tcp://%s.example.test:%d,0.0.0.0:%d" % (
        name, role, name, name, port, port + 1000)


GOOD = [node("primary", "primary", 7700), node("backup", "backup", 7701),
        node("tn1", "traffic", 7702)]


def init(binary, folder, *args, nodes=GOOD, site=SITE):
    cmd = [binary, "--json", "cluster", "init", str(folder)]
    cmd += ["--site", site] if site else []
    for n in nodes:
        cmd += ["--node", n]
    return helpers.run(cmd + list(args), check=False)


def read_conf(path):
    c = configparser.ConfigParser(interpolation=None)
    c.read(path)
    return c


def public_key_of(folder):
    for line in open(os.path.join(folder, "node.secret")):
        if line.startswith("public"):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no public key in " + folder)


def test_every_node_gets_a_complete_configuration(certsync_bin, tmp_path):
    folder = tmp_path / "cluster"
    p = init(certsync_bin, folder)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [n["name"] for n in out["nodes"]] == ["primary", "backup", "tn1"]
    passphrases = set()
    for n in out["nodes"]:
        d = folder / n["name"]
        assert sorted(os.listdir(d)) == ["certsync.conf", "node.secret", "passphrase"]
        for secret in ("node.secret", "passphrase"):
            assert stat.S_IMODE(os.stat(d / secret).st_mode) == 0o600, secret
        passphrases.add(open(d / "passphrase").read())
        assert n["public_key"] == public_key_of(d)
        c = read_conf(d / "certsync.conf")
        assert c["node"]["name"] == n["name"] and c["node"]["role"] == n["role"]
        assert c["node"]["hostname"] == n["name"] + ".example.test"
        assert c["node"]["data_dir"] == str(d / "data")
        assert c["node"]["passphrase_file"] == str(d / "passphrase")
        assert c["node"]["curve_secret_file"] == str(d / "node.secret")
        assert c["cluster"]["site_hostname"] == SITE
        # a DNS endpoint is bound on every address
        assert c["node"]["repl_listen"].startswith("tcp://0.0.0.0:")
        peers = {s.split()[1]: c[s] for s in c.sections() if s.startswith("peer ")}
        assert sorted(peers) == sorted(m["name"] for m in out["nodes"] if m is not n)
        for pname, sec in peers.items():
            assert sec["curve_public_key"] == public_key_of(folder / pname)
            assert sec["hostname"] == pname + ".example.test"
            assert sec["repl_endpoint"].startswith("tcp://%s.example.test:" % pname)
            # listening on 0.0.0.0: the others reach it by its hostname
            assert sec["tls_endpoint"].startswith(pname + ".example.test:")
    assert len(passphrases) == 1
    pw = passphrases.pop().strip()
    assert len(pw) >= 43, "the passphrase is 256 random bits"
    assert pw not in p.stdout.decode() and pw not in p.stderr.decode()


def test_http_listener_gives_http_endpoints(certsync_bin, tmp_path):
    """A fifth field, HTTP_LISTEN, becomes the node's http_listen and every
    other node's http_endpoint for it (ACME http-01); the written
    configurations load (the agent reads them as they are)."""
    folder = tmp_path / "cluster"
    nodes = [GOOD[0] + ",0.0.0.0:8080", GOOD[1] + ",127.0.0.12:80", GOOD[2]]
    p = init(certsync_bin, folder, nodes=nodes)
    assert p.returncode == 0, p.stderr
    c = {n: read_conf(folder / n / "certsync.conf") for n in ("primary", "backup", "tn1")}
    assert c["primary"]["node"]["http_listen"] == "0.0.0.0:8080"
    assert c["backup"]["node"]["http_listen"] == "127.0.0.12:80"
    assert "http_listen" not in c["tn1"]["node"]
    assert c["tn1"]["peer primary"]["http_endpoint"] == "primary.example.test:8080"
    assert c["tn1"]["peer backup"]["http_endpoint"] == "127.0.0.12:80"
    assert "http_endpoint" not in c["primary"]["peer tn1"]
    for n in c:
        res = helpers.run([certsync_bin, "-c", str(folder / n / "certsync.conf"), "acme",
                           "list"], check=False)
        assert b"configuration" not in res.stderr and b".conf:" not in res.stderr, res.stderr


def test_second_cluster_has_other_secrets(certsync_bin, tmp_path):
    for f in ("a", "b"):
        assert init(certsync_bin, tmp_path / f).returncode == 0
    assert open(tmp_path / "a/primary/passphrase").read() != open(
        tmp_path / "b/primary/passphrase").read()
    assert public_key_of(tmp_path / "a/primary") != public_key_of(tmp_path / "b/primary")


def test_container_paths(certsync_bin, tmp_path):
    p = init(certsync_bin, tmp_path / "c", "--container")
    assert p.returncode == 0, p.stderr
    c = read_conf(tmp_path / "c/backup/certsync.conf")
    assert c["node"]["data_dir"] == "/var/lib/certsync"
    assert c["node"]["control_socket"] == "/run/certsync/control.sock"
    assert c["node"]["passphrase_file"] == "/run/secrets/cluster_passphrase"
    assert c["node"]["curve_secret_file"] == "/etc/certsync/node.secret"


def test_an_empty_folder_is_used(certsync_bin, tmp_path):
    (tmp_path / "empty").mkdir()
    assert init(certsync_bin, tmp_path / "empty").returncode == 0
    assert os.path.exists(tmp_path / "empty/primary/certsync.conf")


BAD = {
    # id: (nodes, extra args, site, words, exit)
    "duplicate-name": (GOOD + [node("tn1", "traffic", 7703)], [], SITE, ["tn1", "twice"], 2),
    "duplicate-hostname": (GOOD + ["tn2=traffic,tn1.example.test,tcp://x.example.test:1,0.0.0.0:2"],
                           [], SITE, ["same hostname", "tn1.example.test"], 2),
    "bad-role": (GOOD + ["tn2=master,tn2.example.test,tcp://tn2.example.test:1,0.0.0.0:2"], [],
                 SITE, ["master", "primary, backup or traffic"], 2),
    "two-primaries": (GOOD + [node("p2", "primary", 7704)], [], SITE, ["2 primaries", "exactly one"], 2),
    "no-primary": (GOOD[1:], [], SITE, ["0 primaries"], 2),
    "three-fields": (GOOD + ["tn2=traffic,tn2.example.test,tcp://tn2.example.test:1"], [], SITE,
                     ["four comma-separated fields"], 2),
    "no-equals": (GOOD + ["tn2"], [], SITE, ["name before '='"], 2),
    "missing-site": (GOOD, [], None, ["--site is missing"], 2),
    "bad-site": (GOOD, [], "support..example.test", ["--site", "label"], 2),
    "bad-endpoint-scheme": (GOOD + ["tn2=traffic,tn2.example.test,http://tn2.example.test:1,0.0.0.0:2"],
                            [], SITE, ["tcp://HOST:PORT"], 2),
    "bad-endpoint-port": (GOOD + ["tn2=traffic,tn2.example.test,tcp://tn2.example.test:70000,0.0.0.0:2"],
                          [], SITE, ["PORT 1 to 65535"], 2),
    "bad-tls-listen": (GOOD + ["tn2=traffic,tn2.example.test,tcp://tn2.example.test:1,tn2:8443"],
                       [], SITE, ["TLS_LISTEN", "numeric address"], 2),
    "bad-http-listen": (GOOD + ["tn2=traffic,tn2.example.test,tcp://tn2.example.test:1,0.0.0.0:2,"
                                "tn2:80"], [], SITE, ["HTTP_LISTEN", "numeric address"], 2),
    "six-fields": (GOOD + ["tn2=traffic,tn2.example.test,tcp://tn2.example.test:1,0.0.0.0:2,"
                           "0.0.0.0:80,x"], [], SITE, ["or five with HTTP_LISTEN"], 2),
    "bad-hostname": (GOOD + ["tn2=traffic,tn_2!,tcp://tn2.example.test:1,0.0.0.0:2"], [], SITE,
                     ["tn_2!", "not a DNS name"], 2),
    "unknown-option": (GOOD, ["--colour"], SITE, ["--colour"], 2),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_writes_nothing(certsync_bin, tmp_path, case):
    nodes, extra, site, words, code = BAD[case]
    p = init(certsync_bin, tmp_path / "cluster", *extra, nodes=nodes, site=site)
    err = p.stderr.decode()
    assert p.returncode == code, "exit %d\n%s" % (p.returncode, err)
    for w in words:
        assert w.lower() in err.lower(), "%r not in %s" % (w, err)
    assert json.loads(p.stdout)["error"]["message"] in err
    assert os.listdir(tmp_path) == [], "left behind: %s" % os.listdir(tmp_path)


def test_a_folder_that_is_not_empty_is_left_alone(certsync_bin, tmp_path):
    folder = tmp_path / "cluster"
    assert init(certsync_bin, folder).returncode == 0
    before = {f: open(os.path.join(r, f), "rb").read()
              for r, _, fs in os.walk(folder) for f in fs}
    p = init(certsync_bin, folder)
    assert p.returncode == 1 and "not empty" in p.stderr.decode(), p.stderr
    after = {f: open(os.path.join(r, f), "rb").read()
             for r, _, fs in os.walk(folder) for f in fs}
    assert after == before
    assert sorted(os.listdir(tmp_path)) == ["cluster"]


def test_a_missing_parent_folder(certsync_bin, tmp_path):
    p = init(certsync_bin, tmp_path / "no" / "such" / "cluster")
    assert p.returncode == 2 and "parent exists" in p.stderr.decode(), p.stderr
    assert os.listdir(tmp_path) == []


def test_help(certsync_bin):
    p = helpers.run([certsync_bin, "cluster", "init", "--help"])
    assert b"--node NAME=ROLE,HOSTNAME,REPL_ENDPOINT,TLS_LISTEN" in p.stdout
