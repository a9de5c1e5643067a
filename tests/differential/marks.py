#!/usr/bin/env python3
"""Which known difference classes a run's differing configurations carry.

    python3 tests/differential/marks.py /tmp/ambassador-differential/results.json

For every configuration with at least one differing request, the marks of the classes written
in docs/parity.md (from Emissary's own errors and from the shape of the canary groups), and the
number of configurations and differing requests per combination of marks; and the
configurations one side could not load (T1: ours, two TCPMappings on one port).  Two classes
are marked per request: T2 (a TLS connection to an SNI TCPMapping, port 9002; fixed in
b518ef4), F1 (a TCP connection to a port where a TCPMapping names an undefined TLSContext in
`tls`, 9002 included), T3/T4/P1 (TCP
origination: members of a port that disagree on `tls`, one service with and without `tls`, a
service without a port with `tls`), A1 (only the negotiated ALPN differs, and a TLS setting
writes `alpn_protocols` with a blank after a comma), and the harness artefacts S (a slow
request's few samples of a canary split) and W (a shadow copy that missed the wait once or
twice).  A
configuration with no mark ("NONE") is a difference outside the written list.

    python3 tests/differential/marks.py --fixed T2,T3 results.json

counts a difference of a fixed class (one the binary of the run has the fix for) as "NONE":
it is then a regression, not a known difference.
"""

import collections
import json
import sys


def marks(cfg, res):
    errs = json.dumps(res.get("emissary_errors") or {})
    f = set()
    if "host_redirect after" in errs:
        f.add("N1")  # host_redirect and plain Mappings in one group
    if "which cannot match anything" in errs:
        f.add("N2")  # v3alpha1 host with a * (beside hostname)
    if "exceeds 100" in errs:
        f.add("D2")  # weight totals over 100
    by_prefix = collections.defaultdict(list)
    for m in cfg["mappings"]:
        by_prefix[m["spec"]["prefix"]].append(m["spec"])
    for specs in by_prefix.values():
        if len(specs) < 2:
            continue
        if len({json.dumps(s.get("regex_rewrite")) for s in specs}) > 1:
            f.add("R1")  # a group's regex_rewrite
        for k in ("prefix_exact", "case_sensitive", "prefix_regex"):
            if len({json.dumps(s.get(k)) for s in specs}) > 1:
                f.add("6:" + k)  # members that differ in a path flag
    return f


def request_marks(cfg, r):
    """Marks of one differing request, for the classes that a request shows by itself."""
    req = r["req"]
    f = set()
    if req.get("tcp") in (9000, 9001, 9002) and any(
            t["spec"].get("tls") == "no-such-ctx" and t["spec"]["port"] == req["tcp"]
            for t in cfg.get("tcpmappings", [])):
        # TCPMapping `tls` naming no TLSContext: Emissary keeps it, ours leaves it out (on
        # 9002 also the listener, when nothing else is left on the port); that explains the
        # request whatever else the port has
        return {"F1"}
    if req.get("tcp") == 9002:
        f.add("T2")  # a TCPMapping with `host`: Emissary terminates TLS, ours passed it through
    tcp_same_port = [t["spec"] for t in cfg.get("tcpmappings", []) if t["spec"]["port"] == req.get("tcp")]
    if req.get("tcp") in (9000, 9001) and {None, "origin-ctx"} <= {t.get("tls") for t in tcp_same_port}:
        f.add("T3")  # members of one port that disagree on `tls`: Emissary refuses the newcomer
    if req.get("tcp") in (9000, 9001):
        svc_tls = collections.defaultdict(set)
        for t in cfg.get("tcpmappings", []):
            svc_tls[t["spec"]["service"]].add(t["spec"].get("tls"))
        if any({None, "origin-ctx"} <= svc_tls[t["service"]] for t in tcp_same_port):
            f.add("T4")  # one service with and without `tls`: ours shared one cluster
        if "T3" not in f and any(t.get("tls") == "origin-ctx" and ":" not in t["service"]
                                 for t in tcp_same_port):
            f.add("P1")  # a service without a port and `tls`: Emissary connects to 443, ours 80
    if "x-sleep-ms" in req.get("headers", {}) and r.get("split"):
        f.add("S")  # a slow request sampled 4 (+24) times per side: shares cannot be told apart
    if set(r["diff"]) == {"shadow"} and any(
            o["shadow"] == "[]" and o["n"] <= 2 for side in ("emissary", "ours") for o in r[side]):
        f.add("W")  # one or two sends whose shadow copy did not arrive within the wait
    if set(r["diff"]) == {"tlsinfo"} and req.get("alpn"):
        ctxs = [c["spec"] for c in cfg.get("tlscontexts", [])] + \
            [h["tls_inline"] for h in cfg["hosts"] if h.get("tls_inline")]
        if any(", " in (c.get("alpn_protocols") or "") for c in ctxs):
            f.add("A1")  # alpn_protocols "h2, http/1.1": Emissary keeps the blank
    return f


def main(paths, fixed=frozenset()):
    for path in paths:
        with open(path) as fh:
            d = json.load(fh)
        cfgs = {c["index"]: c for c in d["configs"]}
        nreq, ncfg, none = collections.Counter(), collections.Counter(), []
        for k, v in d["results"].items():
            diffs = [r for r in v["results"] if r["diff"]]
            if not diffs:
                continue
            # a request that shows a class of its own carries that mark only; the others
            # carry the configuration's marks
            f = set()
            for r in diffs:
                m = request_marks(cfgs[int(k)], r) or marks(cfgs[int(k)], v) or {"NONE"}
                f |= {"NONE" if x in fixed else x for x in m}
            key = "+".join(sorted(f))
            ncfg[key] += 1
            nreq[key] += len(diffs)
            if "NONE" in f:
                none.append(int(k))
        # configurations one side could not load: T1 when ours has two TCPMappings on a port
        # (Envoy refuses filter chains with the same match), else NONE
        loads = collections.Counter()
        for k, v in d["results"].items():
            if not v.get("load"):
                continue
            cfg = cfgs[int(k)]
            ports = [t["spec"]["port"] for t in cfg.get("tcpmappings", [])]
            t1 = set(v["load"]) == {"ours"} and len(ports) > len(set(ports)) \
                and "same matching rules" in v["load"]["ours"]
            loads["T1" if t1 else "NONE"] += 1
            if not t1:
                none.append(int(k))
        print(path)
        for key in sorted(ncfg):
            print("  %-36s configurations %4d  differing requests %5d" % (key, ncfg[key], nreq[key]))
        for key in sorted(loads):
            print("  not loaded, %-24s configurations %4d" % (key, loads[key]))
        print("  configurations with no known mark:", sorted(none))


if __name__ == "__main__":
    args = sys.argv[1:]
    fixed = set()
    if args[:1] == ["--fixed"]:
        fixed = set(args[1].split(","))
        args = args[2:]
    main(args, frozenset(fixed))
