"""Durability: SIGKILL during a burst of 1,000 imports.  After a restart the
store digest recomputed from scratch equals the maintained one, every import
that was acknowledged (exit 0 seen here) is present, nothing unasked is, and
the store keeps working (all 1,000 end up there)."""

import os
import subprocess
import threading

import pytest

from helpers import cert_id, openssl, pem_cert_ders, read, write

N = 1000
KILL_AFTER = 300          # acknowledged imports before the SIGKILL
WORKERS = 8


@pytest.fixture(scope="module")
def burst_certs(pki, tmp_path_factory):
    """N distinct leaves (same key, own serial) signed by the test
    intermediate in one `openssl ca` run."""
    d = str(tmp_path_factory.mktemp("burst"))
    os.makedirs(d + "/newcerts")
    write(d + "/index.txt", "")
    write(d + "/serial", "2000\n")
    write(d + "/ca.cnf", "[ca]\ndefault_ca = c\n[c]\ndatabase = %s/index.txt\nnew_certs_dir = %s/newcerts\n"
          "serial = %s/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n"
          "[p]\ncommonName = supplied\n[e]\nbasicConstraints = CA:FALSE\n"
          "subjectAltName = DNS:burst.example.test\n" % (d, d, d))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d + "/burst.key", "-subj", "/CN=burst.example.test", "-out", d + "/burst.csr")
    openssl("ca", "-batch", "-config", d + "/ca.cnf", "-cert", pki.inter, "-keyfile", pki.inter_key,
            "-notext", "-days", "200", "-extensions", "e", "-outdir", d + "/newcerts",
            "-infiles", *([d + "/burst.csr"] * N))
    files = sorted(os.path.join(d, "newcerts", f) for f in os.listdir(d + "/newcerts"))
    assert len(files) == N
    certs = [(f, cert_id(pem_cert_ders(read(f))[0])) for f in files]
    assert len({i for _, i in certs}) == N
    return certs


def run_burst(agent, certs, kill_after=None):
    """Imports every file, WORKERS at a time.  When kill_after acks are seen,
    SIGKILLs the agent and stops starting new imports.  Returns
    (acked ids, attempted ids, results)."""
    lock = threading.Lock()
    state = {"next": 0, "killed": False}
    acked, attempted, failures = set(), set(), []

    def worker():
        while True:
            with lock:
                if state["killed"] or state["next"] >= len(certs):
                    return
                f, cid = certs[state["next"]]
                state["next"] += 1
                attempted.add(cid)
            try:
                p = subprocess.run([agent.binary, "-c", agent.config, "import", f],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                rc, p = None, None
            with lock:
                if rc == 0:
                    acked.add(cid)
                    if kill_after is not None and not state["killed"] and len(acked) >= kill_after:
                        state["killed"] = True
                        agent.kill()                       # SIGKILL by PID, mid-burst
                else:
                    failures.append((f, rc, p.stderr.decode(errors="replace")[-300:] if p else "timeout",
                                     "after kill" if state["killed"] else "BEFORE kill"))

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
        assert not t.is_alive(), "an import worker did not finish"
    return acked, attempted, failures


def test_sigkill_during_burst_of_imports(module_agent_factory, pki, burst_certs):
    a = module_agent_factory()
    a.cli("import", pki.ca_bundle, check=0)
    acked, attempted, failures = run_burst(a, burst_certs, kill_after=KILL_AFTER)
    assert len(acked) >= KILL_AFTER
    assert len(attempted) < N, "the burst ended before the agent was killed"
    assert a.exit_codes and a.exit_codes[-1] == -9, a.exit_codes
    # imports fail only after the kill (in flight, or no agent to talk to)
    early = [x for x in failures if x[3] == "BEFORE kill"]
    assert not early, "imports failed while the agent was up: %s" % early[:3]

    a.start()
    st = a.status()
    assert st["digest_ok"] is True, st
    assert st["digest"] == st["digest_recomputed"], st
    listed = {c["id"] for c in a.cli("cert", "list", check=0).data["certificates"]
              if c["kind"] == "identity"}
    missing = acked - listed
    assert not missing, "%d acknowledged imports lost after SIGKILL, e.g. %s" % (
        len(missing), sorted(missing)[:3])
    assert listed <= attempted, "certificates that were never imported appeared"
    assert st["counts"]["certificates"] == len(listed)
    assert st["counts"]["cas"] == 2
    assert st["seq"] >= len(listed) + 1

    # the store keeps working: import everything again, all end up there once
    acked2, attempted2, failures2 = run_burst(a, burst_certs)
    assert not failures2, failures2[:3]
    st2 = a.status()
    assert st2["counts"]["certificates"] == N
    assert st2["digest_ok"] is True and st2["digest"] == st2["digest_recomputed"]
    assert st2["seq"] > st["seq"]
    # and a clean restart keeps exactly that
    before = (st2["seq"], st2["digest"], st2["counts"])
    assert a.stop() == 0, a.stderr()[-3000:]
    a.start()
    st3 = a.status()
    assert (st3["seq"], st3["digest"], st3["counts"]) == before
