"""`cert list` for large stores: --name, --expiring and pages (--limit,
--after), and `status`, which reads the digest the store keeps unless asked
to --recompute it (issue 15, item 5)."""

import json

import pytest

from test_bad_input import control, error_reply

# name, SANs, days of validity
CERTS = [
    ("alpha", ["www.alpha.test"], 365),
    ("beta", ["api.beta.test"], 5),
    ("gamma", ["*.gamma.test"], 30),
    ("delta", ["delta.test", "mail.delta.test"], 200),
    ("epsilon", ["eps.test"], 2),
    ("zeta", ["zeta.test"], 90),
    ("eta", ["eta.test"], 120),
]


@pytest.fixture(scope="module")
def agent(module_agent_factory):
    a = module_agent_factory()
    for name, sans, days in CERTS:
        a.cli("cert", "self-signed", "--name", name, "--country", "GB", "--common-name",
              sans[0], *[x for s in sans[1:] for x in ("--san", s)], "--days", str(days),
              check=0)
    return a


def names(res):
    return [c["name"] for c in res.data["certificates"]]


def test_name_glob_matches_name_cn_and_sans_in_any_case(agent):
    assert names(agent.cli("cert", "list", "--name", "*.beta.test", check=0)) == ["beta"]
    assert names(agent.cli("cert", "list", "--name", "ALPHA", check=0)) == ["alpha"]
    assert names(agent.cli("cert", "list", "--name", "mail.*", check=0)) == ["delta"]
    # a wildcard SAN is matched as written
    assert names(agent.cli("cert", "list", "--name", "[*].gamma.test", check=0)) == ["gamma"]
    r = agent.cli("cert", "list", "--name", "nothing-here*", json=False, check=0)
    assert r.rc == 0 and "no certificate matches" in r.stdout.decode(), r.describe()


def test_expiring_selects_by_days_left(agent):
    assert sorted(names(agent.cli("cert", "list", "--expiring", "10", check=0))) == \
        ["beta", "epsilon"]
    assert sorted(names(agent.cli("cert", "list", "--expiring", "29", "--name", "*e*",
                                  check=0))) == ["beta", "epsilon"]
    assert len(names(agent.cli("cert", "list", "--expiring", "400", check=0))) == len(CERTS)


def test_pages_cover_the_list_once_in_order(agent):
    whole = [c["id"] for c in agent.cli("cert", "list", check=0).data["certificates"]]
    assert len(whole) == len(CERTS)
    seen, after = [], None
    for _ in range(len(CERTS)):
        args = ["cert", "list", "--limit", "3"] + (["--after", after] if after else [])
        page = agent.cli(*args, check=0).data
        assert 1 <= len(page["certificates"]) <= 3
        seen += [c["id"] for c in page["certificates"]]
        after = page.get("next_after")
        if after is None:
            break
        assert after == seen[-1]
    assert seen == whole
    # the hint a person gets names the id to give --after
    r = agent.cli("cert", "list", "--limit", "2", json=False, check=0)
    assert "--after " + whole[1][:16] in r.stdout.decode(), r.describe()
    # a page that ends exactly at the end says there is no next one
    last = agent.cli("cert", "list", "--after", whole[-2], "--limit", "1", check=0).data
    assert [c["id"] for c in last["certificates"]] == [whole[-1]]
    assert "next_after" not in last


@pytest.mark.parametrize("args,word", [
    (["--limit", "0"], "--limit takes a number from 1"),
    (["--limit", "many"], "--limit takes a number from 1"),
    (["--expiring", "-1"], "--expiring takes a number of days"),
    (["--expiring", "36501"], "--expiring takes a number of days"),
    (["--limit"], "--limit needs a value"),
    (["--colour", "red"], "unknown flag --colour"),
])
def test_bad_flags_are_usage_errors(agent, args, word):
    r = agent.cli("cert", "list", *args, check=2)
    assert word in r.message, r.describe()


def test_after_an_unknown_id_is_refused(agent):
    r = agent.cli("cert", "list", "--after", "0123456789abcdef", check=None)
    assert r.rc == 1 and "0123456789abcdef" in r.message, r.describe()


def test_raw_requests_are_bounded_like_the_flags(agent):
    before = agent.snapshot()
    for args, word in (({"limit": 0}, "args.limit"), ({"limit": "3"}, "args.limit"),
                       ({"expiring": 10 ** 12}, "args.expiring"), ({"name": 7}, "args.name")):
        req = json.dumps({"cmd": "cert.list", "args": args}).encode() + b"\n"
        assert word in error_reply(control(agent, req)), args
    req = json.dumps({"cmd": "status", "args": {"recompute": "yes"}}).encode() + b"\n"
    assert "args.recompute" in error_reply(control(agent, req))
    assert agent.running
    assert agent.snapshot() == before


def test_status_recomputes_the_digest_only_when_asked(agent):
    plain = agent.cli("status", check=0)
    assert "digest_ok" not in plain.data and "digest_recomputed" not in plain.data
    full = agent.cli("status", "--recompute", check=0).data
    assert full["digest_ok"] is True and full["digest_recomputed"] == full["digest"]
    assert full["digest"] == plain.data["digest"]
    r = agent.cli("status", "--recompute", json=False, check=0)
    assert "(recomputed: equal)" in r.stdout.decode(), r.describe()
    r = agent.cli("status", json=False, check=0)
    assert "recomputed" not in r.stdout.decode(), r.describe()
