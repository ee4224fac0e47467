"""Installing certsync like a daemon: the Debian package cpack builds from
this build, unpacked into a fresh root.

The package is unpacked with `dpkg-deb -x`, not installed with `dpkg
--root`: dpkg --root runs the maintainer scripts chrooted into the root
(the postinst's adduser needs a whole Debian system there) and refuses the
package unless its Depends are installed in that root, which a fresh root
cannot have without a network.  Unpacking gives exactly the package's files;
the binary then runs on this machine's libraries, and the test checks that
each library it loads belongs to a package the Depends field names.

`systemd-analyze verify` runs with --root (the unit and the binary it names
are checked in the package's root, not on this machine), MANPATH on the
root's man pages (Documentation= must resolve) and --recursive-errors=no:
the fresh root holds no systemd targets, so the dependencies every service
gets by default (sysinit.target) cannot load there; errors in the unit
itself still fail it.  No running systemd is needed.
"""

import gzip
import os
import re
import subprocess

import pytest

import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    b = os.environ.get("CERTSYNC_BUILD")
    if not b:
        pytest.fail("CERTSYNC_BUILD is not set: ctest sets it", pytrace=False)
    return b


def project_version():
    cache = open(os.path.join(build_dir(), "CMakeCache.txt")).read()
    return re.search(r"^CMAKE_PROJECT_VERSION:\w+=(.+)$", cache, re.M).group(1)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(path of the .deb, the root it is unpacked in)."""
    out = tmp_path_factory.mktemp("cpack")
    helpers.run(["cpack", "-G", "DEB", "-B", str(out), "--config",
                 os.path.join(build_dir(), "CPackConfig.cmake")], timeout=600)
    debs = [f for f in os.listdir(str(out)) if f.endswith(".deb")]
    assert len(debs) == 1, debs
    deb = os.path.join(str(out), debs[0])
    root = str(tmp_path_factory.mktemp("root"))
    helpers.run(["dpkg-deb", "-x", deb, root])
    return deb, root


def field(deb, name):
    return helpers.run(["dpkg-deb", "-f", deb, name]).stdout.decode().strip()


def test_installed_binary_prints_the_version(package):
    deb, root = package
    binary = os.path.join(root, "usr/sbin/certsync")
    res = helpers.run([binary, "--version"])
    assert res.stdout.decode() == "certsync %s\n" % project_version()
    assert field(deb, "Version") == project_version()


def test_depends_names_the_debian_packages_of_every_library_it_loads(package):
    deb, root = package
    depends = {re.match(r"[a-z0-9.+-]+", d.strip()).group(0)
               for d in field(deb, "Depends").split(",")}
    for need in ("adduser", "libc6", "libssl3", "libsodium23", "liblmdb0", "libzmq5",
                 "libsystemd0", "libevent-2.1-7", "libjansson4", "libinih1", "libprotobuf-c1"):
        assert need in depends, "Depends lacks %s: %s" % (need, sorted(depends))
    ldd = helpers.run(["ldd", os.path.join(root, "usr/sbin/certsync")]).stdout.decode()
    direct = helpers.run(["objdump", "-p", os.path.join(root, "usr/sbin/certsync")])
    needed = re.findall(r"^\s*NEEDED\s+(\S+)$", direct.stdout.decode(), re.M)
    assert needed
    for lib in needed:
        path = re.search(r"^\s*%s => (\S+)" % re.escape(lib), ldd, re.M).group(1)
        owner = helpers.run(["dpkg", "-S", os.path.realpath(path)], check=False)
        if owner.returncode != 0:  # merged /usr: dpkg may know it as /lib/...
            owner = helpers.run(["dpkg", "-S", os.path.realpath(path).replace("/usr/lib/", "/lib/", 1)])
        pkg = owner.stdout.decode().split(":")[0]
        assert pkg in depends, "%s comes from %s, which Depends does not name" % (lib, pkg)


def test_unit_file_is_installed_hardened_and_notify(package):
    _, root = package
    unit = open(os.path.join(root, "usr/lib/systemd/system/certsync.service")).read()
    lines = set(unit.splitlines())
    for want in ("Type=notify", "ExecStart=/usr/sbin/certsync agent -c /etc/certsync/certsync.conf",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "CapabilityBoundingSet=", "ReadWritePaths=/var/lib/certsync /run/certsync",
                 "StateDirectory=certsync", "RuntimeDirectory=certsync", "User=certsync"):
        assert want in lines, "certsync.service lacks %r" % want


def test_systemd_analyze_verify_passes_on_the_unit(package):
    _, root = package
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man"))
    res = subprocess.run(["systemd-analyze", "verify", "--root=" + root, "--recursive-errors=no",
                          "certsync.service"], env=env, capture_output=True, timeout=120)
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), \
        (res.returncode, res.stdout.decode(), res.stderr.decode())


def readme_table(header):
    lines = open(os.path.join(REPO, "README.md")).read().splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def man_page(root, section, name):
    roff = gzip.open(os.path.join(root, "usr/share/man/man%s/%s.%s.gz" % (section, name, section)))
    return roff.read().decode().replace("\\&", "")


def test_man_pages_hold_every_command_and_key_of_the_readme(package):
    _, root = package
    page8 = man_page(root, 8, "certsync")
    assert page8.startswith(".\\\"") or ".TH" in page8
    commands = readme_table("| command | what it does |")
    assert len(commands) > 20
    for command, _ in commands:
        assert "\\fB%s\\fR" % command.strip("`") in page8, "certsync(8) lacks %s" % command
    page5 = man_page(root, 5, "certsync.conf")
    keys = readme_table("| section | key | required | meaning |")
    assert len(keys) > 15
    for section, key, _, _ in keys:
        assert "\\fB%s\\fR in [%s]" % (key, section) in page5, \
            "certsync.conf(5) lacks [%s] %s" % (section, key)
    # man renders them (scdoc wrote valid roff).
    for page in ("man8/certsync.8.gz", "man5/certsync.conf.5.gz"):
        res = subprocess.run(["man", "-l", os.path.join(root, "usr/share/man", page)],
                             capture_output=True, env=dict(os.environ, MANWIDTH="100"),
                             timeout=60)
        assert res.returncode == 0 and b"SEE ALSO" in res.stdout, res.stderr.decode()


def complete(root, *words):
    """What bash completion offers after `certsync WORDS...` (the last word
    is the one being completed), with the installed certsync on PATH."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _certsync; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    env = dict(os.environ, PATH=os.path.join(root, "usr/sbin") + ":" + os.environ["PATH"])
    res = subprocess.run(["bash", "-c", script, "bash",
                          os.path.join(root, "usr/share/bash-completion/completions/certsync"),
                          "certsync"] + list(words), env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    return [w for w in res.stdout.decode().splitlines() if w]


def test_bash_completion_offers_the_programs_commands_and_flags(package, tmp_path):
    _, root = package
    binary = os.path.join(root, "usr/sbin/certsync")
    listed = re.findall(r"^  ((?:[a-z][a-z0-9-]* )*[a-z][a-z0-9-]*) +[A-Z]",
                        helpers.run([binary, "--help"]).stdout.decode(), re.M)
    assert "cert list" in listed and "cluster init" in listed
    assert set(complete(root, "")) == {c.split()[0] for c in listed} | {"agent"}
    assert complete(root, "ce") == ["cert"]
    assert set(complete(root, "cert", "")) == {c.split()[1] for c in listed
                                               if c.startswith("cert ")}
    assert complete(root, "-c", "/etc/x", "cert", "self-signed", "--k") == ["--key"]
    assert set(complete(root, "cert", "self-signed", "--key", "")) == {
        "ec:p256", "ec:p384", "rsa:2048", "rsa:3072", "rsa:4096"}
    assert set(complete(root, "export", "abcd1234", "--format", "")) == {"pem", "der", "p7b", "p12"}
    assert set(complete(root, "import", "--wait", "")) == {"backup", "all", "none"}
    assert "--password-file" in complete(root, "import", "--")
    assert set(complete(root, "--")) == {"--json", "--help", "--version"}
    (tmp_path / "site.p12").write_bytes(b"")
    assert complete(root, "import", str(tmp_path / "si")) == [str(tmp_path / "site.p12")]


def test_maintainer_scripts_are_valid_shell(package, tmp_path):
    deb, _ = package
    helpers.run(["dpkg-deb", "-e", deb, str(tmp_path / "control")])
    for script in ("postinst", "prerm"):
        path = str(tmp_path / "control" / script)
        assert os.access(path, os.X_OK), script
        helpers.run(["sh", "-n", path])
