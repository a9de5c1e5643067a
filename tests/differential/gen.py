"""Seeded generator of Ambassador configurations and of boundary requests near each match.

A configuration is a plain dict:

    {"hosts": [{"name", "hostname"}],
     "mappings": [{"name", "form", "spec"}]}

`form` is how the Mapping is written for our compiler:
  v3   getambassador.io/v3alpha1 Mapping CRD
  v2   getambassador.io/v2 Mapping CRD
  ann2 getambassador.io/v2 Mapping inside a Service's getambassador.io/config annotation
  ann3 getambassador.io/v3alpha1 Mapping inside an annotation

`spec` uses the field names of the form (v2 `host` is the v2 field).  `render_ours` writes the
files our compiler reads; `render_emissary` writes what Emissary's Python compiler sees after its
Go side has converted annotations and v2 objects to v3alpha1 (see `to_v3alpha1`).

A request is {"method", "path", "host", "headers": {}}: `path` is sent as is (raw bytes on the
request line, query included).
"""

import copy
import json
import random

NAMESPACE = "default"
SEGMENTS = ["a", "b", "app", "shop", "users", "api", "v1"]
HOST_POOL = ["a.example.com", "b.example.com", "*.example.org", "*"]
SERVICES = ["svc-a", "svc-b", "svc-c:8080", "svc-d.default", "svc-e.other:9000", "svc-f:8080",
            "svc-g", "svc-h:8081", "svc-i.other", "svc-j", "svc-k:8080", "svc-l"]
REDIRECT_SERVICES = ["redir.example.net", "other.example.net:8443"]

# prefix_regex templates, each with paths near it (matching and not).
REGEXES = [
    ("/shop(/.*)?", ["/shop", "/shop/", "/shop/q/r", "/shopx", "/SHOP/q", "/shop/q?x=1"]),
    ("/a/[0-9]+", ["/a/123", "/a/12x", "/a/", "/A/1", "/a/7/"]),
    ("/users/.*", ["/users/x", "/users/", "/users", "/USERS/x", "/users/x/y"]),
    ("^/app/.*$", ["/app/x", "/app", "/app/", "/App/x"]),
    ("/api/v[12]/.*", ["/api/v1/x", "/api/v3/x", "/api/v2/", "/API/v1/x"]),
    ("/b/[a-z]+/?", ["/b/abc", "/b/abc/", "/b/ABC", "/b/abc/d"]),
]
REGEX_REWRITES = [
    {"pattern": "^/([a-z]+)/(.*)$", "substitution": "/r/\\2"},
    {"pattern": "/a/([0-9]+)", "substitution": "/n/\\1"},
    {"pattern": "^/(.*)$", "substitution": "/re/\\1"},
]
EXTRA_HEADERS = [("x-env", "canary"), ("x-env", "prod"), ("x-user", "42"), ("x-user", "bob")]


def _flip_case(s, rng):
    letters = [i for i, c in enumerate(s) if c.isalpha()]
    if not letters:
        return s
    i = rng.choice(letters)
    return s[:i] + s[i].swapcase() + s[i + 1:]


def _prefix(rng):
    r = rng.random()
    seg = rng.choice(SEGMENTS)
    if r < 0.05:
        return "/"
    if r < 0.45:
        p = "/" + seg + "/"
    elif r < 0.65:
        p = "/" + seg
    else:
        p = "/" + seg + "/" + rng.choice(SEGMENTS) + rng.choice(["/", ""])
    if rng.random() < 0.08:
        p = _flip_case(p, rng)
    return p


def gen_config(rng, index):
    hosts = []
    names = rng.sample(HOST_POOL[:3], rng.choice([1, 1, 2, 2, 3]))
    if rng.random() < 0.2:
        # a catch-all Host: its virtual host takes any Host header, ports included
        names.append("*")
    for i, h in enumerate(names):
        hosts.append({"name": "host-%d" % i, "hostname": h})
    host_names = [h["hostname"] for h in hosts]
    mappings = []
    n = rng.randint(2, 9)
    services = rng.sample(SERVICES, len(SERVICES))
    for i in range(n):
        form = rng.choices(["v3", "v2", "ann2", "ann3"], [65, 15, 12, 8])[0]
        v2 = form in ("v2", "ann2")
        spec = {}
        canary_of = None
        if mappings and rng.random() < 0.3:
            canary_of = rng.choice(mappings)
        if canary_of is not None:
            base = canary_of["spec"]
            # a would-be canary: same prefix, often the same match keys
            for k in ("prefix", "prefix_regex", "prefix_exact", "case_sensitive", "headers",
                      "regex_headers", "query_parameters", "method", "precedence"):
                if k in base and (k in ("prefix", "prefix_regex") or rng.random() < 0.85):
                    spec[k] = copy.deepcopy(base[k])
            hn = base.get("hostname", base.get("host"))
            if hn is not None and rng.random() < 0.7:
                if v2:
                    if hn != "*":
                        spec["host"] = hn
                else:
                    spec["hostname"] = hn
            if rng.random() < 0.8:
                spec["weight"] = rng.choice([10, 25, 30, 50, 50, 100])
            if "weight" in base and rng.random() < 0.5:
                pass
        else:
            if rng.random() < 0.15:
                rx, _ = rng.choice(REGEXES)
                spec["prefix"] = rx
                spec["prefix_regex"] = True
            else:
                spec["prefix"] = _prefix(rng)
                if rng.random() < 0.1:
                    spec["prefix_exact"] = True
            if rng.random() < 0.12:
                spec["case_sensitive"] = False
            if rng.random() < 0.2:
                k, v = rng.choice(EXTRA_HEADERS[:2])
                spec["headers"] = {k: v}
            if rng.random() < 0.1:
                spec["regex_headers"] = {"x-user": "^[0-9]+$"}
            if rng.random() < 0.15:
                spec["query_parameters"] = {"debug": "1"}
            if rng.random() < 0.15:
                spec["method"] = rng.choice(["GET", "POST"])
            if rng.random() < 0.15:
                spec["precedence"] = rng.choice([1, -1, 5, 2])
            # where it attaches
            r = rng.random()
            if v2:
                if r < 0.45:
                    pass  # no host: every host
                elif r < 0.8:
                    spec["host"] = rng.choice(host_names + ["a.example.com"])
                else:
                    spec["host"] = rng.choice(["*.example.com", "*.example.org", "q.example.org"])
            else:
                if r < 0.35:
                    spec["hostname"] = "*"
                elif r < 0.65:
                    spec["hostname"] = rng.choice(host_names)
                elif r < 0.8:
                    spec["hostname"] = rng.choice(["*.example.com", "*.example.org", "q.example.org",
                                                   "a.example.com"])
                elif r < 0.95:
                    spec["host"] = rng.choice(host_names + ["a.example.com"])
                    if rng.random() < 0.3:
                        spec["hostname"] = spec["host"]
                # else: neither (v3alpha1: attaches to no Host)
        # what it does
        if rng.random() < 0.08 and canary_of is None:
            spec["host_redirect"] = True
            spec["service"] = rng.choice(REDIRECT_SERVICES)
            r = rng.random()
            if r < 0.35:
                spec["path_redirect"] = rng.choice(["/moved", "/moved/here"])
            elif r < 0.7:
                spec["prefix_redirect"] = rng.choice(["/new/", "/new"])
            if rng.random() < 0.4:
                spec["redirect_response_code"] = rng.choice([302, 307, 308])
        else:
            spec["service"] = services[i % len(services)]
            r = rng.random()
            if r < 0.45:
                pass
            elif r < 0.9:
                spec["rewrite"] = rng.choice(["", "/", "/v2/", "/x"])
            else:
                spec["regex_rewrite"] = copy.deepcopy(rng.choice(REGEX_REWRITES))
        mappings.append({"name": "m%d" % i, "form": form, "spec": spec})
    return {"index": index, "hosts": hosts, "mappings": mappings}


# ---------------------------------------------------------------- rendering

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(str(v))


def to_yaml(obj, indent=0):
    """Block YAML with every string double-quoted (JSON escapes are valid YAML escapes)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, json.dumps(k), to_yaml(v, indent + 1)))
            elif isinstance(v, dict):
                out.append("%s%s: {}\n" % (pad, json.dumps(k)))
            elif isinstance(v, list):
                out.append("%s%s: []\n" % (pad, json.dumps(k)))
            else:
                out.append("%s%s: %s\n" % (pad, json.dumps(k), _scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                body = to_yaml(v, indent + 1)
                out.append("%s-\n%s" % (pad, body))
            else:
                out.append("%s- %s\n" % (pad, _scalar(v) if not isinstance(v, (dict, list)) else json.dumps(v)))
        return "".join(out)
    return pad + _scalar(obj) + "\n"


LISTENERS = [
    {"apiVersion": "getambassador.io/v3alpha1", "kind": "Listener",
     "metadata": {"name": "listener-8080", "namespace": NAMESPACE},
     "spec": {"port": 8080, "protocol": "HTTPS", "securityModel": "XFP",
              "hostBinding": {"namespace": {"from": "ALL"}}}},
    {"apiVersion": "getambassador.io/v3alpha1", "kind": "Listener",
     "metadata": {"name": "listener-8443", "namespace": NAMESPACE},
     "spec": {"port": 8443, "protocol": "HTTPS", "securityModel": "XFP",
              "hostBinding": {"namespace": {"from": "ALL"}}}},
]


def host_objs(cfg):
    out = []
    for h in cfg["hosts"]:
        spec = {"hostname": h["hostname"],
                "requestPolicy": {"insecure": {"action": h.get("action", "Route")}}}
        if h.get("tls") and not h.get("no_secret"):
            spec["tlsSecret"] = {"name": h["tls"]}
        if h.get("tlsContext"):
            spec["tlsContext"] = {"name": h["tlsContext"]}
        if h.get("tls_inline"):
            spec["tls"] = h["tls_inline"]
        meta = {"name": h["name"], "namespace": h.get("namespace", NAMESPACE)}
        if h.get("labels"):
            meta["labels"] = h["labels"]
        out.append({"apiVersion": "getambassador.io/v3alpha1", "kind": "Host",
                    "metadata": meta, "spec": spec})
    return out


def tls_objs(cfg):
    """The kubernetes.io/tls Secrets of the TLS Hosts (the same object for both compilers), and
    a TCP Listener per TCPMapping port (Emissary serves a TCPMapping only on one; ours makes
    its own listener and reports the Listener as not applied)."""
    import base64
    docs = []
    wanted = {(h.get("namespace", NAMESPACE), h["tls"]) for h in cfg["hosts"] if h.get("tls")}
    # the CA of client certificates and the SNI TCPMappings' certificate (listeners_tls part)
    for c in cfg.get("tlscontexts", []):
        for k in ("secret", "ca_secret"):
            if c["spec"].get(k):
                wanted.add((c["namespace"], c["spec"][k]))
    for h in cfg["hosts"]:
        if (h.get("tls_inline") or {}).get("ca_secret"):
            wanted.add((h.get("namespace", NAMESPACE), h["tls_inline"]["ca_secret"]))
    for ns, secret in sorted(wanted):
        crt, key = CERTS[secret]
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": secret, "namespace": ns},
                     "type": "kubernetes.io/tls",
                     "data": {"tls.crt": base64.b64encode(crt.encode()).decode(),
                              "tls.key": base64.b64encode(key.encode()).decode()}})
    for port in sorted({t["spec"]["port"] for t in cfg.get("tcpmappings", [])} & set(TCP_PORTS)):
        docs.append({"apiVersion": "getambassador.io/v3alpha1", "kind": "Listener",
                     "metadata": {"name": "listener-tcp-%d" % port, "namespace": NAMESPACE},
                     "spec": {"port": port, "protocol": "TCP", "securityModel": "XFP",
                              "hostBinding": {"namespace": {"from": "ALL"}}}})
    return docs


def tcp_objs(cfg):
    return [{"apiVersion": "getambassador.io/v3alpha1", "kind": "TCPMapping",
             "metadata": {"name": t["name"], "namespace": NAMESPACE}, "spec": t["spec"]}
            for t in cfg.get("tcpmappings", [])]


def to_v3alpha1(m):
    """A Mapping as Emissary's Go side hands it to Python: v3alpha1, converted like
    pkg/api/getambassador.io/v2/handwritten.conversion.go (v2 `host` -> `hostname`, no host ->
    `hostname: "*"`, `headers: {x: true}` -> regex_headers `.*`)."""
    spec = copy.deepcopy(m["spec"])
    if m["form"] in ("v2", "ann2"):
        host = spec.pop("host", None)
        host_regex = spec.pop("host_regex", None)
        if host_regex:
            spec["host"] = host
            spec["host_regex"] = True
        elif host:
            spec["hostname"] = host
        else:
            spec["hostname"] = "*"
        for field, rfield in (("headers", "regex_headers"), ("query_parameters", "regex_query_parameters")):
            if field in spec:
                plain = {k: v for k, v in spec[field].items() if v is not True}
                bools = [k for k, v in spec[field].items() if v is True]
                if plain:
                    spec[field] = plain
                else:
                    del spec[field]
                for k in bools:
                    spec.setdefault(rfield, {}).setdefault(k, ".*")
    return {"apiVersion": "getambassador.io/v3alpha1", "kind": "Mapping",
            "metadata": {"name": m["name"], "namespace": NAMESPACE}, "spec": spec}


def render_emissary(cfg):
    docs = LISTENERS + tls_objs(cfg) + listener_objs(cfg) + tlscontext_objs(cfg) + host_objs(cfg) \
        + [to_v3alpha1(m) for m in cfg["mappings"]] + tcp_objs(cfg)
    return "".join("---\n" + to_yaml(d) for d in docs)


def render_ours(cfg):
    docs = list(LISTENERS) + tls_objs(cfg) + listener_objs(cfg) + tlscontext_objs(cfg) + host_objs(cfg) \
        + tcp_objs(cfg)
    for m in cfg["mappings"]:
        if m["form"] in ("v3", "v2"):
            ver = "v3alpha1" if m["form"] == "v3" else "v2"
            docs.append({"apiVersion": "getambassador.io/" + ver, "kind": "Mapping",
                         "metadata": {"name": m["name"], "namespace": NAMESPACE},
                         "spec": m["spec"]})
        else:
            ver = "v3alpha1" if m["form"] == "ann3" else "v2"
            inner = {"apiVersion": "getambassador.io/" + ver, "kind": "Mapping", "name": m["name"]}
            inner.update(m["spec"])
            docs.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "ann-" + m["name"], "namespace": NAMESPACE,
                                      "annotations": {"getambassador.io/config": "---\n" + to_yaml(inner)}},
                         "spec": {"selector": {"app": m["name"]},
                                  "ports": [{"port": 80, "targetPort": 8080}]}})
    return "".join("---\n" + to_yaml(d) for d in docs)


# ---------------------------------------------------------------- requests

def _host_variants(hostname, rng):
    if hostname in (None, "*"):
        base = rng.choice(["a.example.com", "b.example.com", "q.example.org", "nohost.example.net"])
    elif hostname.startswith("*."):
        base = "q" + hostname[1:]
    elif hostname.endswith("*"):
        base = hostname[:-1] + "x"
    else:
        base = hostname
    return [base, base, _flip_case(base, rng), base + ":8080", base.upper()]


def _path_variants(m, rng):
    spec = m["spec"]
    p = spec.get("prefix", "/")
    if spec.get("prefix_regex"):
        for rx, paths in REGEXES:
            if rx == p:
                out = list(paths)
                break
        else:
            out = ["/x"]
        out += ["/." + out[0], out[0].replace("/", "//", 1)]
        return out
    stem = p.rstrip("/")
    out = [p, p + "x", p + "x/y", stem, stem + "/", stem + "x", p[:-1] if len(p) > 1 else "/",
           _flip_case(p + "q", rng), "/." + p, p + "./q", p + "%2e%2e/" + rng.choice(SEGMENTS) + "/z",
           "/zz/%2e%2e" + p + "k", "/zz/.." + p + "k", p + "q/../r", "/" + p.lstrip("/").upper(),
           p + "q?debug=1", p + "q?debug=2", p + "?x=1&debug=1", p + "%41q", "//" + p.lstrip("/")]
    return out


def gen_requests(cfg, rng, count):
    cands = []
    hosts = [h["hostname"] for h in cfg["hosts"]]
    for m in cfg["mappings"]:
        spec = m["spec"]
        hn = spec.get("hostname", spec.get("host"))
        hvs = _host_variants(hn, rng)
        for path in _path_variants(m, rng):
            method = spec.get("method", "GET")
            headers = {}
            for k, v in spec.get("headers", {}).items():
                headers[k] = v
            if "regex_headers" in spec:
                headers["x-user"] = "42"
            q = spec.get("query_parameters")
            if q and "?" not in path and rng.random() < 0.7:
                path = path + "?" + "&".join("%s=%s" % kv for kv in q.items())
            cands.append({"method": method, "path": path, "host": hvs[0], "headers": dict(headers)})
            # perturbations
            r = rng.random()
            alt = {"method": method, "path": path, "host": rng.choice(hvs), "headers": dict(headers)}
            if r < 0.25 and headers:
                alt["headers"] = {}
            elif r < 0.4:
                k, v = rng.choice(EXTRA_HEADERS)
                alt["headers"][k] = v
            elif r < 0.55:
                alt["method"] = rng.choice(["GET", "POST", "PUT"])
            elif r < 0.7 and "?" in path:
                alt["path"] = path.split("?")[0]
            alt["host"] = rng.choice(hvs + [rng.choice(hosts).replace("*", "w"),
                                            rng.choice(hosts).replace("*", "w") + ":8080"])
            cands.append(alt)
    for _ in range(4):
        cands.append({"method": "GET", "path": rng.choice(["/", "/nothing", "/x/y"]),
                      "host": rng.choice(hosts).replace("*", "w"), "headers": {}})
    rng.shuffle(cands)
    seen = set()
    out = []
    for c in cands:
        key = json.dumps(c, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
        if len(out) >= count:
            break
    return out


# ---------------------------------------------------------------- beyond routing (issue 14 item 3)
#
# Drawn from a random generator of their own (`xrng`), after the routing part, so that a
# configuration's Hosts, Mappings and first requests are the same with and without them.

ORIGINS = ["https://a.example", "http://b.example:8080"]
SHADOW_SERVICES = ["mirror-a", "mirror-b:8080"]


def _cors(xrng):
    c = {"origins": xrng.sample(ORIGINS, xrng.choice([1, 2]))}
    if xrng.random() < 0.8:
        c["methods"] = xrng.sample(["GET", "POST", "PUT", "OPTIONS"], xrng.choice([1, 2, 3]))
    if xrng.random() < 0.6:
        c["headers"] = xrng.sample(["x-user", "content-type", "x-env"], xrng.choice([1, 2]))
    if xrng.random() < 0.4:
        c["credentials"] = xrng.choice([True, False])
    if xrng.random() < 0.4:
        c["exposed_headers"] = ["x-backend-a"]
    if xrng.random() < 0.4:
        c["max_age"] = xrng.choice(["86400", "600"])
    return c


def add_extras(cfg, xrng):
    """Shadows, CORS, timeouts, retries and header changes on some Mappings of cfg (in place)."""
    plain = [m for m in cfg["mappings"] if not m["spec"].get("host_redirect")]
    for m in plain:
        s = m["spec"]
        if xrng.random() < 0.15:
            s["add_request_headers"] = {"x-added": xrng.choice(["one", "two"])}
            if xrng.random() < 0.5:
                s["add_request_headers"]["x-user"] = xrng.choice(
                    ["override", {"value": "replaced", "append": False}])
        if xrng.random() < 0.1:
            s["remove_request_headers"] = xrng.sample(["x-remove-me", "x-user", "x-env"], xrng.choice([1, 2]))
        if xrng.random() < 0.12:
            s["add_response_headers"] = {"x-resp-added": xrng.choice(["r1", "r2"])}
            if xrng.random() < 0.4:
                s["add_response_headers"]["x-backend-a"] = {"value": "over", "append": False}
        if xrng.random() < 0.1:
            s["remove_response_headers"] = xrng.sample(["x-backend-a", "x-backend-b", "cache-control"],
                                                       xrng.choice([1, 2]))
        if xrng.random() < 0.08:
            s["host_rewrite"] = xrng.choice(["rewritten.example", "svc-internal:8080"])
        if xrng.random() < 0.15:
            s["timeout_ms"] = xrng.choice([100, 300, 1000, 5000])
        if xrng.random() < 0.1:
            s["retry_policy"] = {"retry_on": xrng.choice(["5xx", "gateway-error", "retriable-4xx"]),
                                 "num_retries": xrng.choice([1, 2, 3])}
        if xrng.random() < 0.1:
            s["cors"] = _cors(xrng)
    if plain and xrng.random() < 0.25:
        # a shadow of one Mapping: the same match keys, so it joins its group
        base = xrng.choice(plain)
        spec = {k: copy.deepcopy(v) for k, v in base["spec"].items()
                if k in ("prefix", "prefix_regex", "prefix_exact", "case_sensitive", "headers",
                         "regex_headers", "query_parameters", "method", "precedence", "host", "hostname")}
        spec["shadow"] = True
        spec["service"] = xrng.choice(SHADOW_SERVICES)
        if xrng.random() < 0.3:
            spec["rewrite"] = "/mirror/"
        if xrng.random() < 0.2:
            spec["weight"] = 50
        form = base["form"] if base["form"] in ("v2", "v3") else "v3"
        cfg["mappings"].append({"name": "s%d" % len(cfg["mappings"]), "form": form, "spec": spec})
    return cfg


def extra_requests(cfg, xrng, count):
    """Requests for the extras: preflights and simple requests with Origin, slow answers,
    failing first attempts, headers to remove or append to.  At most `count`."""
    out = []
    for m in cfg["mappings"]:
        s = m["spec"]
        if s.get("host_redirect"):
            continue
        hn = s.get("hostname", s.get("host"))
        host = _host_variants(hn, xrng)[0]
        path = _path_variants(m, xrng)[0]
        headers = dict(s.get("headers", {}))
        if "regex_headers" in s:
            headers["x-user"] = "42"
        q = s.get("query_parameters")
        if q:
            path += "?" + "&".join("%s=%s" % kv for kv in q.items())
        method = s.get("method", "GET")
        base = {"method": method, "path": path, "host": host, "headers": headers}
        cands = []
        if "cors" in s:
            origin = xrng.choice(s["cors"]["origins"] + ["https://evil.example"])
            pre = dict(base, method="OPTIONS", headers=dict(headers, **{
                "origin": origin, "access-control-request-method": xrng.choice(["GET", "PUT", method])}))
            if xrng.random() < 0.5:
                pre["headers"]["access-control-request-headers"] = xrng.choice(["x-user", "x-other"])
            cands.append(pre)
            cands.append(dict(base, headers=dict(headers, origin=xrng.choice(s["cors"]["origins"]))))
        if "timeout_ms" in s or xrng.random() < 0.05:
            cands.append(dict(base, headers=dict(headers, **{"x-sleep-ms": str(xrng.choice([200, 450]))})))
        if "retry_policy" in s or xrng.random() < 0.05:
            cands.append(dict(base, headers=dict(headers, **{"x-fail-first": str(xrng.choice([1, 2, 3]))})))
        if any(k in s for k in ("add_request_headers", "remove_request_headers")):
            cands.append(dict(base, headers=dict({"x-remove-me": "1", "x-user": "bob", "x-env": "prod"},
                                                 **headers)))
        if s.get("shadow"):
            cands.append(base)
        out += cands
    xrng.shuffle(out)
    seen, res = set(), []
    for c in out:
        key = json.dumps(c, sort_keys=True)
        if key not in seen:
            seen.add(key)
            res.append(c)
    return res[:count]


# ---------------------------------------------------------------- TLS Hosts and TCPMappings (issue 14 item 3)
#
# From generators of their own again (`trng`), after the routing part and the extras.  The
# certificates are made at run time (run.py: `make_certs`) and set here: CERTS[secret name] =
# (certificate PEM, key PEM), one self-signed certificate per Host name, so that the client can
# tell which certificate a handshake served (CERT_OF_DER: sha256 of the DER -> secret name).

CERTS = {}
CERT_OF_DER = {}
TLS_SECRET = {"a.example.com": "tls-a", "b.example.com": "tls-b", "*.example.org": "tls-org",
              "*": "tls-any"}
TCP_SERVICES = ["tcp-a:7000", "tcp-b:7001", "tcp-c"]
TCP_PORTS = [9000, 9001]


def add_tls_tcp(cfg, trng):
    """TLS on some Hosts (a Secret each, insecure action Route, Redirect or Reject), and
    TCPMappings on ports 9000/9001 (sometimes two on a port, with weights)."""
    for h in cfg["hosts"]:
        if trng.random() < (0.3 if h["hostname"] == "*" else 0.55):
            h["tls"] = TLS_SECRET[h["hostname"]]
            h["action"] = trng.choice(["Route", "Redirect", "Reject"])
    cfg["tcpmappings"] = []
    if trng.random() < 0.4:
        for port in trng.sample(TCP_PORTS, trng.choice([1, 1, 2])):
            svcs = trng.sample(TCP_SERVICES, 2)
            spec = {"port": port, "service": svcs[0]}
            cfg["tcpmappings"].append({"name": "t%d" % len(cfg["tcpmappings"]), "spec": spec})
            if trng.random() < 0.3:
                # a canary on the same port
                spec2 = {"port": port, "service": svcs[1], "weight": trng.choice([10, 50, 100])}
                if trng.random() < 0.5:
                    spec["weight"] = trng.choice([50, 90])
                cfg["tcpmappings"].append({"name": "t%d" % len(cfg["tcpmappings"]), "spec": spec2})
    return cfg


def _covers(hostname, host):
    h = host.lower().split(":")[0]
    if hostname == "*":
        return True
    if hostname.startswith("*."):
        return h.endswith(hostname[1:])
    return h == hostname


def tls_requests(cfg, base, trng, count):
    """Requests for TLS Hosts and TCPMappings, at most `count` (plus two per TCP port): routing
    requests again over TLS with the SNI of their Host header, with another SNI or none, and
    over cleartext with `x-forwarded-proto` (securityModel XFP); TCP connections that send a
    line to each TCPMapping port."""
    out = []
    tls_hosts = [h for h in cfg["hosts"] if h.get("tls")]
    if tls_hosts:
        cands = [r for r in base if "tcp" not in r]
        trng.shuffle(cands)
        for r in cands:
            covering = [h for h in tls_hosts if _covers(h["hostname"], r["host"])]
            host = r["host"].lower().split(":")[0]
            x = trng.random()
            if covering and x < 0.5:
                out.append(dict(r, tls=True, sni=host))
            elif x < 0.7:
                other = trng.choice(["a.example.com", "b.example.com", "q.example.org",
                                     "nohost.example.net", None])
                out.append(dict(r, tls=True, sni=other))
            elif x < 0.85:
                out.append(dict(r, headers=dict(r["headers"], **{
                    "x-forwarded-proto": trng.choice(["https", "http"])})))
            else:
                out.append(dict(r, tls=True, sni=host, headers=dict(r["headers"], **{
                    "x-forwarded-proto": "http"})))
            if len(out) >= count:
                break
    for port in sorted({t["spec"]["port"] for t in cfg.get("tcpmappings", [])} & set(TCP_PORTS)):
        for i in range(2):
            out.append({"tcp": port, "data": "hello-%d-%d" % (port, i), "method": "TCP",
                        "path": "", "host": "", "headers": {}})
    return out


# ---------------------------------------------------------------- Listeners, TLSContexts, SNI TCPMappings (issue 14 item 3)
#
# From generators of their own once more (`lrng`), after the TLS Hosts and TCPMappings (so
# everything drawn before stays the same; `--no-listeners-tls` leaves this part out):
#   * more HTTP Listeners (ports 8081, 8082, 8444) with `protocol` or `protocolStack`, every
#     `securityModel`, `hostBinding` by namespace (ALL / SELF, the Listener in `default` or
#     `other`) and by `selector.matchLabels` on the Hosts' labels, `l7Depth`;
#   * labels on the Hosts, and sometimes one more Host in namespace `other`;
#   * TLS settings for the TLS Hosts through a TLSContext (`tlsContext: {name}`, or the
#     implicit `<host>-context`, with `hosts` that do or do not name the Host, with or without
#     its own `secret`) or inline `tls`: `min_tls_version` / `max_tls_version`,
#     `alpn_protocols`, `cipher_suites`, `ca_secret` with `cert_required`;
#   * `tls` (origination through a TLSContext, or an undefined one) on some TCPMappings of
#     ports 9000/9001;
#   * TCPMappings with `host` on port 9002 (TLS terminated with the TLSContext whose `hosts`
#     name it, or a Host's, or none), with or without `tls`.

NS_OTHER = "other"
EXTRA_HTTP_PORTS = [8081, 8082, 8444]
SNI_TCP_PORT = 9002
# every port a configuration may listen on besides 8080, mapped to loopback ports by run.py
OTHER_PORTS = [8443] + EXTRA_HTTP_PORTS + TCP_PORTS + [SNI_TCP_PORT]
CA_SECRET = "ca-client"     # the CA that signed the client certificate "client"
TCP_SNI_SECRET = "tls-tcp"  # the certificate of the SNI TCPMappings' own TLSContexts
TCP_SNI_HOSTS = ["tcp.example.com", "db.example.com"]
CIPHERS = ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]
LABELS = [{"tier": "a"}, {"tier": "b"}, {"tier": "a", "zone": "z1"}]


def _tls_settings(lrng):
    s = {}
    if lrng.random() < 0.4:
        s["min_tls_version"] = lrng.choice(["v1.2", "v1.3"])
    if lrng.random() < 0.3:
        s["max_tls_version"] = lrng.choice(["v1.2", "v1.3"])
    if lrng.random() < 0.3:
        s["alpn_protocols"] = lrng.choice(["h2", "http/1.1", "h2,http/1.1", "h2, http/1.1"])
    if lrng.random() < 0.25:
        s["cipher_suites"] = lrng.sample(CIPHERS, lrng.choice([1, 2]))
    if lrng.random() < 0.35:
        s["ca_secret"] = CA_SECRET
        r = lrng.random()
        if r < 0.6:
            s["cert_required"] = True
        elif r < 0.8:
            s["cert_required"] = False
    return s


def add_listeners_tls(cfg, lrng):
    """Listeners, Host labels and namespaces, TLSContexts and SNI TCPMappings (in place)."""
    if lrng.random() < 0.35:
        # one more Host, in namespace `other` (its Secret there too)
        h = {"name": "host-o", "hostname": lrng.choice(["c.example.net", "*.example.net"]),
             "namespace": NS_OTHER}
        if lrng.random() < 0.6:
            h["tls"] = "tls-net"
            h["action"] = lrng.choice(["Route", "Redirect", "Reject"])
        else:
            h["action"] = lrng.choice(["Route", "Route", "Redirect"])
        cfg["hosts"].append(h)
    for h in cfg["hosts"]:
        if lrng.random() < 0.6:
            h["labels"] = dict(lrng.choice(LABELS))
    cfg["listeners"] = []
    for port in lrng.sample(EXTRA_HTTP_PORTS, lrng.choice([0, 1, 1, 2, 3])):
        spec = {"port": port}
        tls = port == 8444 or lrng.random() < 0.3
        if lrng.random() < 0.7:
            spec["protocol"] = "HTTPS" if tls else "HTTP"
        else:
            spec["protocolStack"] = ["TLS", "HTTP", "TCP"] if tls else ["HTTP", "TCP"]
        spec["securityModel"] = lrng.choice(["XFP", "SECURE", "INSECURE"])
        r = lrng.random()
        binding = {}
        if r < 0.35:
            binding["namespace"] = {"from": lrng.choice(["ALL", "all"])}
        elif r < 0.6:
            binding["namespace"] = {"from": "SELF"}
        elif r < 0.85:
            binding["namespace"] = {"from": "ALL"}
            binding["selector"] = {"matchLabels": dict(lrng.choice(LABELS[:2]))}
        else:
            binding["selector"] = {"matchLabels": dict(lrng.choice(LABELS[:2]))}
        spec["hostBinding"] = binding
        if lrng.random() < 0.3:
            spec["l7Depth"] = lrng.choice([1, 2])
        ns = NS_OTHER if lrng.random() < 0.3 else NAMESPACE
        cfg["listeners"].append({"name": "listener-%d" % port, "namespace": ns, "spec": spec})
    # TLS settings of the TLS Hosts
    cfg["tlscontexts"] = []
    for h in cfg["hosts"]:
        if not h.get("tls") or lrng.random() < 0.35:
            continue
        settings = _tls_settings(lrng)
        ns = h.get("namespace", NAMESPACE)
        r = lrng.random()
        if r < 0.45:
            ctx = {"name": "ctx-" + h["name"], "namespace": ns, "spec": dict(settings)}
            x = lrng.random()
            ctx["spec"]["hosts"] = [h["hostname"]] if x < 0.6 else ([h["name"]] if x < 0.75 else ["elsewhere.example"])
            if lrng.random() < 0.7:
                ctx["spec"]["secret"] = h["tls"]
            cfg["tlscontexts"].append(ctx)
            h["tlsContext"] = ctx["name"]
            if lrng.random() < 0.08:
                # the quirk: a Host with a tlsContext but no tlsSecret terminates no TLS
                h["no_secret"] = True
                ctx["spec"]["secret"] = h["tls"]
        elif r < 0.75:
            h["tls_inline"] = settings
        else:
            ctx = {"name": h["name"] + "-context", "namespace": ns, "spec": dict(settings)}
            ctx["spec"]["hosts"] = [h["hostname"]]
            ctx["spec"]["secret"] = h["tls"]
            cfg["tlscontexts"].append(ctx)
    # origination on some TCPMappings of ports 9000/9001 (a TLSContext, or an undefined one)
    for t in cfg["tcpmappings"]:
        if lrng.random() < 0.2:
            t["spec"]["tls"] = lrng.choice(["origin-ctx", "origin-ctx", "no-such-ctx"])
    # TCPMappings with `host` (SNI) on port 9002
    if lrng.random() < 0.35:
        tls_hosts = [h["hostname"] for h in cfg["hosts"] if h.get("tls") and "*" not in h["hostname"]]
        names = lrng.sample(TCP_SNI_HOSTS, lrng.choice([1, 2]))
        if tls_hosts and lrng.random() < 0.3:
            names.append(lrng.choice(tls_hosts))  # a TLS Host's name: its context terminates
        for name in names:
            svc = lrng.choice(TCP_SERVICES)
            spec = {"port": SNI_TCP_PORT, "host": name, "service": svc}
            if lrng.random() < 0.25:
                spec["tls"] = lrng.choice(["origin-ctx", "origin-ctx", "no-such-ctx"])
            cfg["tcpmappings"].append({"name": "t%d" % len(cfg["tcpmappings"]), "spec": spec})
            if name in TCP_SNI_HOSTS and lrng.random() < 0.8:
                ctx = {"name": "tcpctx-" + name.split(".")[0], "namespace": NAMESPACE,
                       "spec": {"hosts": [name], "secret": TCP_SNI_SECRET}}
                if lrng.random() < 0.3:
                    ctx["spec"].update(_tls_settings(lrng))
                cfg["tlscontexts"].append(ctx)
        if lrng.random() < 0.6:
            cfg["listeners"].append({"name": "listener-sni-%d" % SNI_TCP_PORT, "namespace": NAMESPACE,
                                     "spec": {"port": SNI_TCP_PORT, "protocol": "TLS",
                                              "securityModel": "SECURE",
                                              "hostBinding": {"namespace": {"from": "ALL"}}}})
    if any(t["spec"].get("tls") == "origin-ctx" for t in cfg["tcpmappings"]):
        # an origination context (Emissary refuses one without any certificate)
        cfg["tlscontexts"].append({"name": "origin-ctx", "namespace": NAMESPACE,
                                   "spec": {"secret": TCP_SNI_SECRET, "sni": "upstream.example"}})
    return cfg


def listener_objs(cfg):
    return [{"apiVersion": "getambassador.io/v3alpha1", "kind": "Listener",
             "metadata": {"name": l["name"], "namespace": l["namespace"]}, "spec": l["spec"]}
            for l in cfg.get("listeners", [])]


def tlscontext_objs(cfg):
    return [{"apiVersion": "getambassador.io/v3alpha1", "kind": "TLSContext",
             "metadata": {"name": c["name"], "namespace": c["namespace"]}, "spec": c["spec"]}
            for c in cfg.get("tlscontexts", [])]


def _client_variant(lrng, ctx_settings):
    """TLS client options: version, a client certificate, ALPN offer, cipher."""
    o = {}
    r = lrng.random()
    if r < 0.25:
        o["tlsver"] = "1.2"
    elif r < 0.45:
        o["tlsver"] = "1.3"
    if ctx_settings.get("ca_secret") or lrng.random() < 0.15:
        o["ccert"] = lrng.choice(["client", "client", "stranger", None])
        if o["ccert"] is None:
            del o["ccert"]
    if lrng.random() < 0.3:
        o["alpn"] = lrng.choice([["h2", "http/1.1"], ["http/1.1"], ["h2"]])
    if lrng.random() < 0.2:
        o["tlsver"] = "1.2"
        o["cipher"] = lrng.choice(CIPHERS)
    return o


def _settings_of(cfg, h):
    if h.get("tls_inline"):
        return h["tls_inline"]
    for c in cfg.get("tlscontexts", []):
        if c["name"] in (h.get("tlsContext"), h["name"] + "-context"):
            return c["spec"]
    return {}


def listener_tls_requests(cfg, base, lrng, count):
    """Requests for this part, at most `count` (plus the SNI TCP connections): routing requests
    again to the other Listeners' ports (cleartext, with `x-forwarded-proto`, over TLS with the
    SNI of the Host header); over TLS to 8080 with TLS versions, client certificates (signed by
    the `ca_secret` CA, or by a stranger, or none), ALPN offers and ciphers; TLS connections to
    port 9002 with each TCPMapping's SNI, another or none."""
    out = []
    plain = [r for r in base if "tcp" not in r and not r.get("tls")]
    lrng.shuffle(plain)
    ports = [l["spec"]["port"] for l in cfg.get("listeners", []) if l["spec"]["port"] != SNI_TCP_PORT]
    tls_hosts = [h for h in cfg["hosts"] if h.get("tls")]
    for r in plain:
        if len(out) >= count:
            break
        host = r["host"].lower().split(":")[0]
        x = lrng.random()
        if ports and x < 0.55:
            port = lrng.choice(ports + [8443])
            y = lrng.random()
            if y < 0.35:
                out.append(dict(r, port=port))
            elif y < 0.6:
                out.append(dict(r, port=port, headers=dict(r["headers"], **{
                    "x-forwarded-proto": lrng.choice(["https", "http"])})))
            else:
                req = dict(r, port=port, tls=True, sni=host if lrng.random() < 0.85 else None)
                if lrng.random() < 0.3:
                    req["headers"] = dict(r["headers"], **{"x-forwarded-proto": "http"})
                out.append(req)
        elif tls_hosts:
            covering = [h for h in tls_hosts if _covers(h["hostname"], r["host"])]
            h = covering[0] if covering else lrng.choice(tls_hosts)
            sni = host if covering else (h["hostname"].replace("*", "w"))
            req = dict(r, tls=True, sni=sni, **_client_variant(lrng, _settings_of(cfg, h)))
            if lrng.random() < 0.2:
                req["port"] = lrng.choice(ports + [8443])
            out.append(req)
    sni_tcp = [t for t in cfg.get("tcpmappings", []) if t["spec"]["port"] == SNI_TCP_PORT]
    if sni_tcp:
        snis = sorted({t["spec"]["host"] for t in sni_tcp}) + [lrng.choice(["other.example.com", None])]
        for i, sni in enumerate(snis):
            req = {"tcp": SNI_TCP_PORT, "tls": True, "sni": sni, "data": "hello-sni-%d" % i,
                   "method": "TCP", "path": "", "host": "", "headers": {}}
            if lrng.random() < 0.3:
                req.update(_client_variant(lrng, {}))
                req.pop("alpn", None)
            out.append(req)
    return out
