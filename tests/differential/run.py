#!/usr/bin/env python3
"""Differential check: Emissary's own compiler against ours, in a real Envoy.

    python3 tests/differential/run.py --emissary /path/to/emissary-checkout --configs 500 --seed 1

See tests/differential/README.md.  Everything listens on 127.0.0.1 only; every loop and every
child process is bounded by a count or a timeout.
"""

import argparse
import asyncio
import collections
import copy
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import envoyconf  # noqa: E402
import gen  # noqa: E402

FIELDS = ("status", "backend", "path", "host", "location", "reqhdrs", "resphdrs", "shadow", "cert",
          "tlsinfo")

# request headers the backend receives that are compared (reqhdrs): every header except these,
# which differ per request (ids) or are the harness's own controls
REQ_HDR_SKIP = {"host", "x-request-id", "content-length", "x-diff-id", "x-sleep-ms", "x-fail-first",
                "x-envoy-attempt-count"}
# response headers the client receives that are compared (resphdrs): every header except these
RESP_HDR_SKIP = {"date", "content-length", "x-envoy-upstream-service-time", "connection",
                 "content-type", "location", "server"}
# headers every echo answer carries, so that remove_response_headers has something to remove
ECHO_RESP_HEADERS = [("x-backend-a", "1"), ("x-backend-b", "2"), ("cache-control", "no-store")]
SHADOW_WAIT = 0.02  # seconds to wait for a shadow copy to reach its backend (after an answer from one)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup

def find_python(explicit):
    if explicit:
        return explicit
    cands = []
    root = os.path.expanduser("~/.pyenv/versions")
    for ver in ("3.13", "3.12", "3.11"):
        if os.path.isdir(root):
            for d in sorted(os.listdir(root), reverse=True):
                if d.startswith(ver + "."):
                    cands.append(os.path.join(root, d, "bin", "python" + ver))
        p = shutil.which("python" + ver)
        if p:
            cands.append(p)
    for c in cands:
        try:
            subprocess.run([c, "-c", "import venv"], check=True, capture_output=True, timeout=60)
            return c
        except Exception:
            continue
    raise SystemExit("no Python 3.13/3.12/3.11 found; pass --python")


def runtime_requirements(checkout):
    """The pinned runtime requirements of Emissary's Python code: [dependency-groups].runtime of
    the checkout's pyproject.toml (what its uv workspace installs), or python/requirements.txt in
    older checkouts."""
    import tomllib
    pp = os.path.join(checkout, "pyproject.toml")
    if os.path.exists(pp):
        with open(pp, "rb") as f:
            data = tomllib.load(f)
        reqs = data.get("dependency-groups", {}).get("runtime")
        if reqs:
            return reqs
    for cand in ("python/requirements.txt", "builder/requirements.txt"):
        p = os.path.join(checkout, cand)
        if os.path.exists(p):
            with open(p) as f:
                return [l.split("#")[0].strip() for l in f if l.split("#")[0].strip()
                        and not l.startswith("-")]
    raise SystemExit("no pinned requirements found under %s" % checkout)


def setup_emissary(checkout, work, python):
    src = os.path.join(checkout, "python", "ambassador", "src")
    if not os.path.isdir(os.path.join(src, "ambassador")):
        raise SystemExit("%s: no python/ambassador/src/ambassador (not an Emissary checkout?)" % checkout)
    reqs = runtime_requirements(checkout)
    venv = os.path.join(work, "venv-emissary")
    stamp = os.path.join(venv, "requirements.stamp")
    want = "\n".join(reqs)
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        py = find_python(python)
        log("creating venv", venv, "with", py)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([py, "-m", "venv", venv], check=True, timeout=300)
        log("pip install", " ".join(reqs))
        r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q"] + reqs,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit("pip install of Emissary's requirements failed:\n" + r.stdout + r.stderr)
        with open(stamp, "w") as f:
            f.write(want)
    vpy = os.path.join(venv, "bin", "python")
    env = dict(os.environ, PYTHONPATH=src)
    r = subprocess.run([vpy, "-c", "import ambassador.compile, ambassador.VERSION as V; print(V.Version)"],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise SystemExit("cannot import Emissary's compiler:\n" + r.stderr)
    rev = subprocess.run(["git", "-C", checkout, "describe", "--tags", "--always", "--dirty"],
                         capture_output=True, text=True)
    return {"python": vpy, "env": env, "version": r.stdout.strip(),
            "commit": rev.stdout.strip() if rev.returncode == 0 else "unknown (not a git work tree)"}


def our_binary(rebuild, work, given=None):
    """target/release/kubectl-ambassador (or --binary), built if missing, and copied into WORK so
    that a rebuild by someone else during the run cannot change one side half-way."""
    exe = given or os.path.join(REPO, "target", "release", "kubectl-ambassador")
    if not given and (rebuild or not os.path.exists(exe)):
        log("cargo build --release -p kubectl-ambassador")
        subprocess.run(["cargo", "build", "--release", "-p", "kubectl-ambassador"], cwd=REPO,
                       check=True, timeout=7200)
    with open(exe, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(exe)))
    head = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()
    if given:
        # a binary named by --binary is used where it is (a copy of its own, not rebuilt)
        return exe, "kubectl-ambassador sha256 %s, built %s (--binary %s)" % (digest, built, given)
    os.makedirs(os.path.join(work, "bin"), exist_ok=True)
    copy_ = os.path.join(work, "bin", "kubectl-ambassador-" + digest)
    if not os.path.exists(copy_):
        shutil.copy2(exe, copy_)
    return copy_, "kubectl-ambassador sha256 %s, built %s; main at %s when the run started" % (
        digest, built, head)


def make_certs(work):
    """One self-signed certificate per TLS Secret of the generator (openssl, made once per WORK),
    set in gen.CERTS, and the sha256 of each DER in gen.CERT_OF_DER (which certificate a
    handshake served)."""
    d = os.path.join(work, "certs")
    os.makedirs(d, exist_ok=True)
    for hostname, secret in gen.TLS_SECRET.items():
        crt, key = os.path.join(d, secret + ".crt"), os.path.join(d, secret + ".key")
        if not (os.path.exists(crt) and os.path.exists(key)):
            cn = hostname if hostname != "*" else "any.example.net"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                            "-out", crt, "-days", "30", "-subj", "/CN=" + cn,
                            "-addext", "subjectAltName=DNS:" + cn],
                           check=True, capture_output=True, timeout=120)
        with open(crt) as f:
            crt_pem = f.read()
        with open(key) as f:
            key_pem = f.read()
        gen.CERTS[secret] = (crt_pem, key_pem)
        der = ssl.PEM_cert_to_DER_cert(crt_pem)
        gen.CERT_OF_DER[hashlib.sha256(der).hexdigest()] = secret
    make_more_certs(d)


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=120)


def make_more_certs(d):
    """The certificates of the Listener/TLSContext part: `tls-net` (Hosts in namespace `other`),
    `tls-tcp` (the SNI TCPMappings' TLSContexts), the CA `ca-client` (a `ca_secret`), a client
    certificate `client` it signed, and a self-signed `stranger` client certificate."""
    def path(n, ext):
        return os.path.join(d, n + "." + ext)
    for name, cn, san in (("tls-net", "c.example.net", "DNS:c.example.net,DNS:*.example.net"),
                          ("tls-tcp", "tcp.example.com", "DNS:tcp.example.com,DNS:db.example.com"),
                          ("stranger", "stranger", "DNS:stranger")):
        if not os.path.exists(path(name, "crt")):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path(name, "key"),
                     "-out", path(name, "crt"), "-days", "30", "-subj", "/CN=" + cn, "-addext",
                     "subjectAltName=" + san)
    if not os.path.exists(path("client", "crt")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca-client", "key"),
                 "-out", path("ca-client", "crt"), "-days", "30", "-subj", "/CN=diff-client-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("client", "key"),
                 "-out", path("client", "csr"), "-subj", "/CN=diff-client")
        ext = path("client", "ext")
        with open(ext, "w") as f:
            f.write("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", path("client", "csr"), "-CA", path("ca-client", "crt"),
                 "-CAkey", path("ca-client", "key"), "-CAcreateserial", "-out", path("client", "crt"),
                 "-days", "30", "-extfile", ext)
    for name in ("tls-net", "tls-tcp", "ca-client"):
        with open(path(name, "crt")) as f:
            crt_pem = f.read()
        with open(path(name, "key")) as f:
            gen.CERTS[name] = (crt_pem, f.read())
        gen.CERT_OF_DER[hashlib.sha256(ssl.PEM_cert_to_DER_cert(crt_pem)).hexdigest()] = name
    for name in ("client", "stranger"):
        CLIENT_CERTS[name] = (path(name, "crt"), path(name, "key"))


CLIENT_CERTS = {}  # name -> (certificate file, key file) of the client certificates


# ---------------------------------------------------------------- compiling

def compile_emissary(em, items, timeout=1800):
    """items: list of (yaml_path, json_path). One process per chunk (imports are slow)."""
    for i in range(0, len(items), 100):
        chunk = items[i:i + 100]
        args = [a for pair in chunk for a in pair]
        r = subprocess.run([em["python"], os.path.join(HERE, "emissary_compile.py")] + args,
                           capture_output=True, text=True, env=em["env"], timeout=timeout)
        if r.returncode != 0:
            log("emissary_compile failed:", r.stderr[-2000:])


def load_emissary(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except Exception as e:
        return {"error": "no output: %s" % e}
    if "exception" in d:
        return {"error": d["exception"], "errors": d.get("errors")}
    cfg = d["config"]
    sr = cfg.get("static_resources", {})
    rt = cfg.get("layered_runtime") or cfg.get("bootstrap", {}).get("layered_runtime")
    return {"listeners": sr.get("listeners", []), "clusters": sr.get("clusters", []), "routes": {},
            "runtime": rt, "errors": d.get("errors") or {}}


def compile_ours(exe, yaml_path, timeout=120):
    r = subprocess.run([exe, "preview", "-f", yaml_path, "-o", "json"], capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode not in (0, 1) or not r.stdout.strip():
        return {"error": "preview exit %d: %s" % (r.returncode, r.stderr[-2000:])}
    d = json.loads(r.stdout)
    lint = subprocess.run([exe, "lint", "-f", yaml_path, "-o", "json"], capture_output=True,
                          text=True, timeout=timeout)
    diags = []
    try:
        diags = [{"code": x.get("code"), "severity": x.get("severity"), "message": x.get("message"),
                  "object": x.get("object")} for x in json.loads(lint.stdout).get("diagnostics", [])]
    except Exception:
        pass
    dump = parse_config_dump(d)
    for name, sec in dump["secrets"].items():
        # preview redacts private keys, as Envoy's config dump does: the key of the Secret the
        # generator wrote is put back
        pk = sec.get("tls_certificate", {}).get("private_key")
        key = gen.CERTS.get(name.split("/")[-1])
        if pk is not None and key:
            sec["tls_certificate"]["private_key"] = {"inline_string": key[1]}
    return dict(dump, errors=[x for x in diags if x["severity"] == "error"],
                warnings=[x for x in diags if x["severity"] != "error"])


def parse_config_dump(d):
    listeners, clusters, routes, eds, secrets = [], [], {}, {}, {}
    for c in d.get("configs", []):
        t = c.get("@type", "")
        if t.endswith("ListenersConfigDump"):
            for k in ("static_listeners", "dynamic_listeners"):
                for l in c.get(k, []):
                    l = l.get("active_state", l)
                    listeners.append(l.get("listener", l))
        elif t.endswith("ClustersConfigDump"):
            for k in ("static_clusters", "dynamic_active_clusters", "dynamic_warming_clusters"):
                for cl in c.get(k, []):
                    clusters.append(cl.get("cluster", cl))
        elif t.endswith("RoutesConfigDump"):
            for k in ("static_route_configs", "dynamic_route_configs"):
                for rc in c.get(k, []):
                    rc = rc.get("route_config", rc)
                    routes[rc.get("name")] = rc
        elif t.endswith("SecretsConfigDump"):
            for k in ("static_secrets", "dynamic_active_secrets"):
                for sc in c.get(k, []):
                    sec = sc.get("secret", sc)
                    secrets[sec.get("name")] = sec
        elif t.endswith("EndpointsConfigDump"):
            for k in ("static_endpoint_configs", "dynamic_endpoint_configs"):
                for e in c.get(k, []):
                    e = e.get("endpoint_config", e)
                    eds[e.get("cluster_name")] = e
    return {"listeners": listeners, "clusters": clusters, "routes": routes, "eds": eds,
            "secrets": secrets}


def has_split(side):
    """Whether a side's routes may answer one request in more than one way (canaries)."""
    found = [False]

    def walk(o):
        if isinstance(o, dict):
            wc = o.get("weighted_clusters")
            if isinstance(wc, dict) and len(wc.get("clusters", [])) > 1:
                found[0] = True
            rf = o.get("runtime_fraction")
            if isinstance(rf, dict):
                dv = rf.get("default_value", {})
                den = {"HUNDRED": 100, "TEN_THOUSAND": 10000, "MILLION": 1000000}.get(
                    dv.get("denominator", "HUNDRED"), 100)
                if dv.get("numerator", 0) < den:
                    found[0] = True
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(side.get("listeners"))
    walk(side.get("routes"))
    return found[0]


def has_shadow(side):
    """Whether a side's routes mirror requests (request_mirror_policies)."""
    return "request_mirror_polic" in json.dumps([side.get("listeners"), side.get("routes")])


# ---------------------------------------------------------------- echo backends

class Echo:
    """Loopback HTTP/1.1 backends: each answers with the port it was reached on, the request
    line's path, the Host and the other request headers it received (REQ_HDR_SKIP left out), and
    the response headers ECHO_RESP_HEADERS.  Controls (request headers): `x-sleep-ms: N` answers
    after N ms; `x-fail-first: N` answers 503 to the first N attempts of one request (by its
    `x-diff-id`, unique per send); a request whose Host ends in `-shadow` (Envoy's shadow copy) is
    recorded under its `x-diff-id` for the client to collect."""

    def __init__(self, base_port):
        self.base = base_port
        self.next = base_port
        self.port_of = {}
        self.identity_of = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []
        self.shadows = {}   # x-diff-id -> [(backend, path, host)] of shadow copies received
        self.attempts = {}  # x-diff-id -> attempts seen (x-fail-first)
        self.first_timeout = {}  # x-diff-id -> x-envoy-expected-rq-timeout-ms of its first attempt

    async def _handle(self, reader, writer):
        port = writer.get_extra_info("sockname")[1]
        try:
            for _ in range(100000):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                hdrs = {}
                for l in lines[1:]:
                    if ":" in l:
                        k, v = l.split(":", 1)
                        k = k.strip().lower()
                        # repeated headers joined, so that an appended value shows
                        hdrs[k] = hdrs[k] + "," + v.strip() if k in hdrs else v.strip()
                cl = int(hdrs.get("content-length", "0") or 0)
                if cl:
                    await reader.readexactly(min(cl, 1 << 20))
                rid = hdrs.get("x-diff-id")
                host = hdrs.get("host") or ""
                if rid and host.endswith("-shadow"):
                    # a shadow copy: recorded for the client to collect, its answer is dropped
                    self.shadows.setdefault(rid, []).append(
                        (self.identity_of.get(port, "port %s" % port), path, host))
                status = b"200 OK"
                # x-fail-first: N fails the first N attempts of one request (x-diff-id) with a
                # 503, for retry policies
                if rid and hdrs.get("x-fail-first", "").isdigit() and not host.endswith("-shadow"):
                    n = self.attempts.get(rid, 0) + 1
                    self.attempts[rid] = n
                    if n <= int(hdrs["x-fail-first"]):
                        status = b"503 Service Unavailable"
                # x-sleep-ms: N answers after N ms (at most 5 s), for timeouts
                if hdrs.get("x-sleep-ms", "").isdigit():
                    await asyncio.sleep(min(int(hdrs["x-sleep-ms"]), 5000) / 1000.0)
                shown = {k: v for k, v in hdrs.items() if k not in REQ_HDR_SKIP}
                if "x-envoy-expected-rq-timeout-ms" in shown and rid:
                    # the route timeout as the first attempt saw it, rounded up to 100 ms (a
                    # retry sees what is left of it)
                    first = self.first_timeout.setdefault(rid, shown["x-envoy-expected-rq-timeout-ms"])
                    if first.isdigit():
                        shown["x-envoy-expected-rq-timeout-ms"] = str(-(-int(first) // 100) * 100)
                body = json.dumps({"port": port, "path": path, "host": hdrs.get("host"),
                                   "method": method, "status": status.decode()[:3],
                                   "headers": shown}).encode()
                extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in ECHO_RESP_HEADERS)
                writer.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n%s"
                             b"content-length: %d\r\n\r\n%s" % (status, extra, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError,
                asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _handle_tcp(self, reader, writer):
        """A TCP echo: reads one line and answers with the port it was reached on and the line."""
        port = writer.get_extra_info("sockname")[1]
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            writer.write(json.dumps({"port": port, "path": line.decode("latin-1").strip(),
                                     "host": None, "headers": {}}).encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    def shadows_of(self, rid, wait):
        """The shadow copies of request `rid` that reached a backend within `wait` seconds."""
        deadline = time.time() + wait
        while rid not in self.shadows and time.time() < deadline:
            time.sleep(0.001)
        return tuple(sorted(self.shadows.pop(rid, [])))

    def port(self, identity):
        if identity not in self.port_of:
            for _ in range(200):
                p = self.next
                self.next += 1
                fut = asyncio.run_coroutine_threadsafe(
                    asyncio.start_server(self._handle_tcp if identity.startswith("tcp-") else self._handle,
                                         "127.0.0.1", p, reuse_address=True), self.loop)
                try:
                    self.servers.append(fut.result(30))
                    break
                except OSError:
                    continue  # taken by someone else: the next one
            else:
                raise SystemExit("no free loopback port for echo backends near %d" % self.base)
            self.port_of[identity] = p
            self.identity_of[p] = identity
        return self.port_of[identity]


# ---------------------------------------------------------------- Envoy

class Envoy:
    def __init__(self, work, name, boot, ports):
        self.path = os.path.join(work, name + ".json")
        with open(self.path, "w") as f:
            json.dump(boot, f)
        self.logpath = os.path.join(work, name + ".log")
        self.ports = ports
        self.proc = None

    def start(self, timeout=60):
        self.log = open(self.logpath, "w")
        self.proc = subprocess.Popen(["envoy", "-c", self.path, "--disable-hot-restart",
                                      "--concurrency", "1", "-l", "error"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        pending = set(self.ports)
        while pending and time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            for p in list(pending):
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
                    pending.discard(p)
                except OSError:
                    pass
            if pending:
                time.sleep(0.1)
        return not pending

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self.log.close()

    def error(self):
        try:
            with open(self.logpath) as f:
                lines = [l for l in f if "critical" in l or "error" in l]
            return "".join(lines[-5:])[-3000:]
        except OSError:
            return ""


def envoy_validate(boot, work, name):
    path = os.path.join(work, name + ".validate.json")
    with open(path, "w") as f:
        json.dump(boot, f)
    try:
        r = subprocess.run(["envoy", "--mode", "validate", "-c", path, "--disable-hot-restart",
                            "-l", "critical"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "validate timed out"
    if r.returncode == 0:
        return None
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "critical" in l or "error" in l]
    return "\n".join(lines[-3:])[-2000:] or "exit %d" % r.returncode


# ---------------------------------------------------------------- requests

_send_ids = iter(range(1, 1 << 62))


TLS_CONTEXTS = {}
TLS_OPTIONS = ("tlsver", "ccert", "alpn", "cipher")


def tls_context(req):
    """A client context for the TLS options of a request: `tlsver` ("1.2" or "1.3": that
    version only), `ccert` (a client certificate of CLIENT_CERTS), `alpn` (the protocols
    offered), `cipher` (the only TLS 1.2 cipher offered).  No verification of the server."""
    key = json.dumps([req.get(k) for k in TLS_OPTIONS])
    ctx = TLS_CONTEXTS.get(key)
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}.get(req.get("tlsver"))
        if v:
            ctx.minimum_version = ctx.maximum_version = v
        if req.get("ccert"):
            ctx.load_cert_chain(*CLIENT_CERTS[req["ccert"]])
        if req.get("alpn"):
            ctx.set_alpn_protocols(req["alpn"])
        if req.get("cipher"):
            ctx.set_ciphers(req["cipher"])
        TLS_CONTEXTS[key] = ctx
    return ctx


def tls_info(sock):
    """(certificate served, "version cipher alpn") of a TLS socket."""
    der = sock.getpeercert(binary_form=True)
    cert = gen.CERT_OF_DER.get(hashlib.sha256(der or b"").hexdigest(), "unknown certificate")
    c = sock.cipher()
    return cert, "%s %s alpn=%s" % (sock.version(), c[0] if c else None, sock.selected_alpn_protocol())


class TLSConnection(http.client.HTTPConnection):
    """HTTPS to a loopback port with the SNI given (None: no SNI) and the client options of
    `req` (tls_context); `cert` names the certificate the server presented (gen.CERT_OF_DER),
    `info` the version, cipher and ALPN protocol."""

    def __init__(self, port, sni, req):
        super().__init__("127.0.0.1", port, timeout=10)
        self.sni = sni
        self.req = req
        self.cert = None
        self.info = None

    def connect(self):
        super().connect()
        self.sock = tls_context(self.req).wrap_socket(self.sock, server_hostname=self.sni)
        self.cert, self.info = tls_info(self.sock)
        self.fresh = True  # no answer on this connection yet


# A TLS connection refused after its handshake: in TLS 1.3 the server checks the client
# certificate after the client has finished the handshake, and whether the client then reads
# the alert (CERTIFICATE_REQUIRED, UNKNOWN_CA), an EOF or a reset depends on timing, so these
# are one answer
AFTER_HANDSHAKE = "tls: refused after the handshake"


class Client:
    def __init__(self, port, other_ports=None):
        """port: the loopback port of the configuration's listener on 8080; other_ports: the
        loopback ports of its listeners on gen.OTHER_PORTS (TCPMapping ports included)."""
        self.port = port
        self.tcp_ports = other_ports or {}
        self.conns = {}

    def send_tcp(self, req):
        """A TCP connection to the loopback port of the TCPMapping port req["tcp"] (over TLS
        when req["tls"], with its SNI and client options): one line sent, the echo's answer
        read."""
        rid = "%d-%d" % (self.port, next(_send_ids))
        port = self.tcp_ports.get(req["tcp"])
        if port is None:
            return "no listener", None, [], b"", rid, None, None
        cert = info = None
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                sk = raw
                if req.get("tls"):
                    try:
                        sk = tls_context(req).wrap_socket(raw, server_hostname=req.get("sni"))
                    except ssl.SSLError as e:
                        return "tls: " + (e.reason or "handshake failed"), None, [], b"", rid, None, None
                    cert, info = tls_info(sk)
                sk.sendall(req["data"].encode() + b"\n")
                buf = b""
                for _ in range(1000):
                    chunk = sk.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            return ("answered" if buf else "closed"), None, [], buf, rid, cert, info
        except ssl.SSLError as e:
            if cert is not None:
                # after the handshake (TLS 1.3 checks the client certificate then): which
                # alert the client reads, if any, depends on timing
                return AFTER_HANDSHAKE, None, [], b"", rid, None, None
            return "tls: " + (e.reason or "error"), None, [], b"", rid, cert, info
        except OSError as e:
            if cert is not None:
                return AFTER_HANDSHAKE, None, [], b"", rid, None, None
            return ("refused" if isinstance(e, ConnectionRefusedError) else "error"), None, [], b"", rid, cert, info

    def send(self, req, tries=3):
        """(status, location, response headers, body, x-diff-id of the send, certificate,
        TLS version/cipher/ALPN)."""
        if "tcp" in req:
            return self.send_tcp(req)
        lport = req.get("port", 8080)
        port = self.port if lport == 8080 else self.tcp_ports.get(lport)
        if port is None:
            return "no listener", None, [], b"", None, None, None
        key = (lport, req.get("tls", False), req.get("sni")) + tuple(
            json.dumps(req.get(k)) for k in TLS_OPTIONS)
        for attempt in range(tries):
            rid = "%d-%d" % (self.port, next(_send_ids))
            c = self.conns.get(key)
            try:
                if c is None:
                    if req.get("tls"):
                        c = TLSConnection(port, req.get("sni"), req)
                    else:
                        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    self.conns[key] = c
                    if req.get("tls"):
                        c.connect()
                        if c.sock.selected_alpn_protocol() == "h2":
                            # HTTP/2 negotiated: this client speaks HTTP/1.1 only, so the
                            # handshake is the answer
                            info = (c.cert, c.info)
                            c.close()
                            self.conns.pop(key, None)
                            return "alpn h2", None, [], b"", rid, info[0], info[1]
                c.putrequest(req["method"], req["path"], skip_host=True, skip_accept_encoding=True)
                c.putheader("Host", req["host"])
                for k, v in req.get("headers", {}).items():
                    c.putheader(k, v)
                c.putheader("x-diff-id", rid)
                if req["method"] in ("POST", "PUT"):
                    c.putheader("Content-Length", "0")
                c.endheaders()
                r = c.getresponse()
                body = r.read()
                c.fresh = False
                hdrs = r.getheaders()
                cert = getattr(c, "cert", None)
                info = getattr(c, "info", None)
                if r.getheader("connection", "").lower() == "close":
                    c.close()
                    self.conns.pop(key, None)
                return r.status, r.getheader("location"), hdrs, body, rid, cert, info
            except ssl.SSLError as e:
                # a refused handshake (no filter chain for this SNI, or no certificate): not
                # retried, it is the answer
                c.close()
                self.conns.pop(key, None)
                if getattr(c, "fresh", False) and c.cert is not None:
                    return AFTER_HANDSHAKE, None, [], b"", rid, None, None
                return "tls: " + (e.reason or "handshake failed"), None, [], b"", rid, None, None
            except (OSError, http.client.HTTPException):
                if c:
                    c.close()
                self.conns.pop(key, None)
                if c is not None and getattr(c, "fresh", False) and getattr(c, "cert", None) is not None:
                    return AFTER_HANDSHAKE, None, [], b"", rid, None, None
                if attempt == tries - 1:
                    return None, None, [], b"", rid, None, None
                time.sleep(0.05)


def outcome(resp, echo, shadows=False):
    status, location, hdrs, body, rid, cert, info = resp
    o = {"status": status, "backend": None, "path": None, "host": None, "location": location,
         "reqhdrs": None, "resphdrs": None, "shadow": None, "cert": cert, "tlsinfo": info}
    if body.startswith(b"{"):
        try:
            d = json.loads(body)
            o["backend"] = echo.identity_of.get(d["port"], "port %s" % d["port"])
            o["path"] = d["path"]
            o["host"] = d["host"]
            o["reqhdrs"] = json.dumps(sorted(d.get("headers", {}).items()))
        except (ValueError, KeyError):
            pass
    resp_h = collections.defaultdict(list)
    for k, v in hdrs:
        k = k.lower()
        if k not in RESP_HDR_SKIP:
            if k.startswith("access-control-"):
                # a list in a CORS header: "GET, PUT" and "GET,PUT" are one list
                v = re.sub(r"\s*,\s*", ",", v)
            resp_h[k].append(v)
    o["resphdrs"] = json.dumps(sorted((k, ",".join(v)) for k, v in resp_h.items()))
    if shadows:
        # Envoy mirrors only requests that a route sends to a cluster: wait only after an
        # answer from a backend or an upstream timeout
        wait = SHADOW_WAIT if o["backend"] or status == 504 else 0
        o["shadow"] = json.dumps(echo.shadows_of(rid, wait) if rid else ())
    return o


def okey(o):
    return tuple(o[f] for f in FIELDS)


def sample(client, req, echo, n, shadows=False):
    counts = collections.Counter()
    for _ in range(n):
        counts[okey(outcome(client.send(req), echo, shadows))] += 1
    return counts


def diff_fields(ce, co):
    """Fields whose sets of observed values differ between the two sides."""
    out = []
    for i, f in enumerate(FIELDS):
        if {k[i] for k in ce} != {k[i] for k in co}:
            out.append(f)
    if not out and set(ce) != set(co):
        out.append("combination")
    return out


def freq_differs(ce, co):
    ne, no = sum(ce.values()), sum(co.values())
    for k in set(ce) | set(co):
        pe, po = ce.get(k, 0) / ne, co.get(k, 0) / no
        p = (ce.get(k, 0) + co.get(k, 0)) / (ne + no)
        sd = (p * (1 - p) * (1 / ne + 1 / no)) ** 0.5
        if abs(pe - po) > 4.5 * sd + 0.05:
            return True
    return False


def compare(ce_client, co_client, req, echo, split, samples, shadows=False):
    """Compare one request on both sides.  Returns (diff fields, emissary counts, our counts)."""
    n = samples if split else 1
    more = 120
    slow = "x-sleep-ms" in req.get("headers", {})
    if slow:
        # a slow answer: fewer samples (a timeout does not depend on the member)
        n, more = min(n, 4), 24
    ce = sample(ce_client, req, echo, n, shadows)
    co = sample(co_client, req, echo, n, shadows)
    # disjoint sets after 4 samples of a slow request are no evidence yet: look harder
    if split and ((set(ce) != set(co) and (set(ce) & set(co) or slow)) or freq_differs(ce, co)):
        # look harder before calling it a difference: a 10 % share can hide in 16 samples
        # (disjoint sets after 16 samples each are a difference already)
        ce += sample(ce_client, req, echo, more, shadows)
        co += sample(co_client, req, echo, more, shadows)
        if set(ce) == set(co):
            return (["split"] if freq_differs(ce, co) else []), ce, co
    elif not split and set(ce) != set(co):
        # one more look, to rule out a transient error
        ce2 = sample(ce_client, req, echo, 1, shadows)
        co2 = sample(co_client, req, echo, 1, shadows)
        if set(ce2) == set(co2) and set(ce2) == set(ce):
            return [], ce, co
    return diff_fields(ce, co), ce, co


# ---------------------------------------------------------------- one batch

class Harness:
    def __init__(self, args, em, exe):
        self.args = args
        self.em = em
        self.exe = exe
        self.work = args.work
        self.echo = Echo(args.port_base + 2000)
        self.batch_no = 0
        self.hcm_patch = {}
        for kv in args.ours_hcm or []:
            k, v = kv.split("=", 1)
            self.hcm_patch[k] = json.loads(v)

    def compile_all(self, cases, tag):
        """cases: list of (key, cfg).  Returns {key: {"emissary": side, "ours": side}}."""
        d = os.path.join(self.work, tag)
        os.makedirs(d, exist_ok=True)
        items = []
        out = {}
        for key, cfg in cases:
            base = os.path.join(d, str(key))
            os.makedirs(base, exist_ok=True)
            with open(os.path.join(base, "emissary.yaml"), "w") as f:
                f.write(gen.render_emissary(cfg))
            with open(os.path.join(base, "ours.yaml"), "w") as f:
                f.write(gen.render_ours(cfg))
            items.append((os.path.join(base, "emissary.yaml"), os.path.join(base, "emissary.out.json")))
        compile_emissary(self.em, items)
        for key, cfg in cases:
            base = os.path.join(d, str(key))
            e = load_emissary(os.path.join(base, "emissary.out.json"))
            try:
                o = compile_ours(self.exe, os.path.join(base, "ours.yaml"))
            except Exception as ex:
                o = {"error": "preview failed: %s" % ex}
            out[key] = {"emissary": e, "ours": o}
        return out

    def run_batch(self, cases, compiled, requests_of):
        """Load every case's two outputs into two Envoys (one per side), send each case's
        requests.  Returns {key: {"results": [...], "load": {...}}}."""
        self.batch_no += 1
        bdir = os.path.join(self.work, "envoy")
        os.makedirs(bdir, exist_ok=True)
        res = {key: {"results": [], "load": {}} for key, _ in cases}
        ports = {}
        sides = {}
        for side, base in (("emissary", self.args.port_base), ("ours", self.args.port_base + 1000)):
            parts = {}
            for i, (key, _) in enumerate(cases):
                s = compiled[key][side]
                if "error" in s:
                    res[key]["load"][side] = "compile: " + s["error"][-1500:]
                    continue
                # the other ports (gen.OTHER_PORTS: 8443, 8081, 8082, 8444, TCPMapping ports
                # 9000-9002) -> PORT_BASE+3000+8i+j (Emissary), +3500+8i+j (ours); with
                # --no-listeners-tls the TCPMapping ports 9000, 9001 only, as before
                tbase = self.args.port_base + (3000 if side == "emissary" else 3500)
                others = gen.TCP_PORTS if self.args.no_listeners_tls else gen.OTHER_PORTS
                tcp = {p: tbase + 8 * i + j for j, p in enumerate(others)}
                ls, cs, _ = envoyconf.prepare(s["listeners"], s["clusters"], s.get("routes", {}),
                                              "%s%d_" % (side[0], i), base + i, self.echo.port,
                                              s.get("eds"), self.hcm_patch if side == "ours" else None,
                                              tcp, s.get("secrets"))
                if not any(l["address"]["socket_address"]["port_value"] == base + i for l in ls):
                    res[key]["load"][side] = "no listener on port 8080"
                    continue
                bound = {l["address"]["socket_address"]["port_value"] for l in ls}
                parts[key] = (ls, cs, base + i, {p: q for p, q in tcp.items() if q in bound})
            runtime = None
            for key, _ in cases:
                rt = compiled[key][side].get("runtime")
                if rt:
                    runtime = rt
            sides[side] = (parts, runtime)

        envoys = {}
        for side, (parts, runtime) in sides.items():
            for attempt in range(3):
                boot = envoyconf.bootstrap([l for p in parts.values() for l in p[0]],
                                           [c for p in parts.values() for c in p[1]], runtime)
                env = Envoy(bdir, "%s-%d" % (side, self.batch_no), boot,
                            [p[2] for p in parts.values()] + [q for p in parts.values() for q in p[3].values()])
                if not parts or env.start():
                    envoys[side] = env
                    break
                env.stop()
                log("envoy (%s) failed to load batch %d: %s" % (side, self.batch_no, env.error().strip()[-300:]))
                # find the configurations Envoy refuses, one by one, and leave them out
                bad = []
                for key, p in parts.items():
                    err = envoy_validate(envoyconf.bootstrap(p[0], p[1], runtime), bdir, "%s-one" % side)
                    if err:
                        bad.append(key)
                        res[key]["load"][side] = "envoy rejected: " + err
                for key in bad:
                    del parts[key]
                if not bad:
                    for key in list(parts):
                        res[key]["load"][side] = "envoy failed to start (batch): " + env.error()[-500:]
                    parts.clear()
            for key in parts:
                ports.setdefault(key, {})[side] = parts[key][2]
                ports[key][side + "-tcp"] = parts[key][3]
        try:
            for key, cfg in cases:
                pe = ports.get(key, {}).get("emissary")
                po = ports.get(key, {}).get("ours")
                if pe is None or po is None:
                    continue
                split = has_split(compiled[key]["emissary"]) or has_split(compiled[key]["ours"])
                shadows = has_shadow(compiled[key]["emissary"]) or has_shadow(compiled[key]["ours"])
                ce_client = Client(pe, ports[key].get("emissary-tcp"))
                co_client = Client(po, ports[key].get("ours-tcp"))
                for req in requests_of(key):
                    fields, ce, co = compare(ce_client, co_client, req, self.echo, split,
                                             self.args.samples, shadows)
                    res[key]["results"].append({"req": req, "diff": fields, "split": split,
                                                "emissary": counts_json(ce), "ours": counts_json(co)})
        finally:
            for env in envoys.values():
                env.stop()
        return res


def counts_json(c):
    return [dict(zip(FIELDS, k), n=v) for k, v in sorted(c.items(), key=lambda kv: -kv[1])]


# ---------------------------------------------------------------- grouping and minimising

def req_features(req):
    p = req["path"].split("?")[0]
    lp = p.lower()
    f = []
    if "/./" in p or "/../" in p or p.endswith("/..") or p.endswith("/.") or "%2e" in lp:
        f.append("dot-segment")
    if "//" in p:
        f.append("double-slash")
    if "%" in p.replace("%2e", "").replace("%2E", ""):
        f.append("percent-escape")
    if "tcp" in req:
        return ["tcp"] + (["tls", "sni" if req.get("sni") else "no-sni"] if req.get("tls") else []) \
            + ["%s=%s" % (k, req[k]) for k in ("tlsver", "ccert", "cipher") if req.get(k)]
    if req.get("port", 8080) != 8080:
        f.append("port-%d" % req["port"])
    for k in ("tlsver", "ccert", "cipher"):
        if req.get(k):
            f.append("%s=%s" % (k, req[k]))
    if req.get("alpn"):
        f.append("alpn=" + ",".join(req["alpn"]))
    if req.get("tls"):
        f.append("tls")
        sni = req.get("sni")
        if sni is None:
            f.append("no-sni")
        elif sni != req["host"].lower().split(":")[0]:
            f.append("other-sni")
    if "x-forwarded-proto" in req.get("headers", {}):
        f.append("xfp-" + req["headers"]["x-forwarded-proto"])
    h = req["host"]
    if ":" in h:
        f.append("host-port")
    if h != h.lower():
        f.append("host-case")
    hd = req.get("headers", {})
    if req["method"] == "OPTIONS" and "origin" in hd:
        f.append("preflight")
    elif "origin" in hd:
        f.append("origin")
    for k in ("x-sleep-ms", "x-fail-first", "x-remove-me"):
        if k in hd:
            f.append(k[2:])
    return f


def cfg_features(cfg):
    f = set()
    for m in cfg["mappings"]:
        s = m["spec"]
        f.add("form:" + m["form"])
        for k in s:
            if k not in ("service", "prefix"):
                f.add(k)
    return sorted(f)


def signature(cfg, r):
    return (tuple(r["diff"]), tuple(req_features(r["req"])))


def simplifications(cfg, req):
    """Smaller cases, as operations: drop one Mapping, one Host, one field of a Mapping, write an
    annotation Mapping as a CRD of the same version, simplify the request."""
    ops = []
    for m in cfg["mappings"]:
        ops.append(("mapping", m["name"]))
    if len(cfg["hosts"]) > 1:
        for h in cfg["hosts"]:
            ops.append(("host", h["name"]))
    for h in cfg["hosts"]:
        if h.get("tls"):
            ops.append(("notls", h["name"]))
        if h.get("action", "Route") != "Route":
            ops.append(("route", h["name"]))
    for t in cfg.get("tcpmappings", []):
        ops.append(("tcpmapping", t["name"]))
        if "tls" in t["spec"]:
            ops.append(("tcpfield", t["name"], "tls"))
    for l in cfg.get("listeners", []):
        ops.append(("listener", l["name"]))
        for k in ("l7Depth",):
            if k in l["spec"]:
                ops.append(("lfield", l["name"], k))
    for c in cfg.get("tlscontexts", []):
        for k in c["spec"]:
            if k not in ("secret", "hosts"):
                ops.append(("ctxfield", c["name"], k))
    for h in cfg["hosts"]:
        if h.get("labels"):
            ops.append(("hfield", h["name"], "labels"))
        for k in (h.get("tls_inline") or {}):
            ops.append(("inlinefield", h["name"], k))
    for m in cfg["mappings"]:
        for k in m["spec"]:
            if k not in ("prefix", "service", "path_redirect", "prefix_redirect", "redirect_response_code"):
                ops.append(("field", m["name"], k))
        if m["form"] in ("ann2", "ann3"):
            ops.append(("crd", m["name"]))
    for k in TLS_OPTIONS:
        if req.get(k):
            ops.append(("reqopt", k))
    if "tcp" in req:
        return ops
    for k in req.get("headers", {}):
        ops.append(("header", k))
    if "?" in req["path"]:
        ops.append(("query",))
    if req["method"] != "GET":
        ops.append(("get",))
    if normalised_path(req["path"]) != req["path"]:
        ops.append(("normpath",))
    if req["host"] != req["host"].lower().split(":")[0]:
        ops.append(("plainhost",))
    return ops


UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalised_path(p):
    """The path as Envoy's normalize_path leaves it (RFC 3986: unreserved %XX decoded, dot
    segments removed); the query untouched.  Used to drop a request's dot segments when the
    difference does not depend on them."""
    path, sep, query = p.partition("?")

    def dec(m):
        c = chr(int(m.group(1), 16))
        return c if c in UNRESERVED else m.group(0)
    path = re.sub(r"%([0-9A-Fa-f]{2})", dec, path)
    segs = path.split("/")[1:]
    out = []
    for i, sg in enumerate(segs):
        last = i == len(segs) - 1
        if sg in (".", ".."):
            if sg == ".." and out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(sg)
    return "/" + "/".join(out) + sep + query


def apply_ops(cfg, req, ops):
    cfg, req = copy.deepcopy(cfg), copy.deepcopy(req)
    for op in ops:
        if op[0] == "mapping":
            cfg["mappings"] = [m for m in cfg["mappings"] if m["name"] != op[1]]
        elif op[0] == "host":
            # never the last one: with no Host, Emissary makes its own default Host (insecure
            # Redirect, a fallback certificate), a case this check does not compare
            if len(cfg["hosts"]) > 1:
                cfg["hosts"] = [h for h in cfg["hosts"] if h["name"] != op[1]]
        elif op[0] in ("field", "crd"):
            for m in cfg["mappings"]:
                if m["name"] != op[1]:
                    continue
                if op[0] == "crd":
                    m["form"] = "v2" if m["form"] == "ann2" else "v3"
                    continue
                m["spec"].pop(op[2], None)
                if op[2] == "host_redirect":
                    for kk in ("path_redirect", "prefix_redirect", "redirect_response_code"):
                        m["spec"].pop(kk, None)
        elif op[0] in ("notls", "route"):
            for hh in cfg["hosts"]:
                if hh["name"] == op[1]:
                    hh.pop("tls" if op[0] == "notls" else "action", None)
        elif op[0] == "tcpmapping":
            cfg["tcpmappings"] = [t for t in cfg.get("tcpmappings", []) if t["name"] != op[1]]
        elif op[0] == "tcpfield":
            for t in cfg.get("tcpmappings", []):
                if t["name"] == op[1]:
                    t["spec"].pop(op[2], None)
        elif op[0] == "listener":
            cfg["listeners"] = [l for l in cfg.get("listeners", []) if l["name"] != op[1]]
        elif op[0] == "lfield":
            for l in cfg.get("listeners", []):
                if l["name"] == op[1]:
                    l["spec"].pop(op[2], None)
        elif op[0] == "ctxfield":
            for c in cfg.get("tlscontexts", []):
                if c["name"] == op[1]:
                    c["spec"].pop(op[2], None)
        elif op[0] == "hfield":
            for hh in cfg["hosts"]:
                if hh["name"] == op[1]:
                    hh.pop(op[2], None)
        elif op[0] == "inlinefield":
            for hh in cfg["hosts"]:
                if hh["name"] == op[1]:
                    hh["tls_inline"].pop(op[2], None)
        elif op[0] == "reqopt":
            req.pop(op[1], None)
        elif op[0] == "header":
            req["headers"].pop(op[1], None)
        elif op[0] == "query":
            req["path"] = req["path"].split("?")[0]
        elif op[0] == "get":
            req["method"] = "GET"
        elif op[0] == "normpath":
            req["path"] = normalised_path(req["path"])
        elif op[0] == "plainhost":
            req["host"] = req["host"].lower().split(":")[0]
    return cfg, req


def _try(h, cases, want):
    """cases: list of (cfg, req).  Which of them still show the difference `want`."""
    keyed = [("min%d" % i, c) for i, (c, _) in enumerate(cases)]
    compiled = h.compile_all(keyed, "minimise")
    reqs = {"min%d" % i: [r] for i, (_, r) in enumerate(cases)}
    res = {}
    for j in range(0, len(keyed), 40):
        res.update(h.run_batch(keyed[j:j + 40], compiled, lambda k: reqs[k]))
    out = []
    for i in range(len(cases)):
        rr = res["min%d" % i]["results"]
        out.append(rr[0] if rr and rr[0]["diff"] == want else None)
    return out


def minimise(h, cfg, req, want, budget=8):
    """Greedy reduction that keeps the same differing fields.  Each round tries every single
    simplification at once, then all the successful ones together."""
    cur_cfg, cur_req = copy.deepcopy(cfg), copy.deepcopy(req)
    last = None
    for _round in range(budget):
        ops = simplifications(cur_cfg, cur_req)
        if not ops:
            break
        cases = [apply_ops(cur_cfg, cur_req, [op]) for op in ops]
        results = _try(h, cases, want)
        good = [(op, c, r) for op, c, r in zip(ops, cases, results) if r is not None]
        if not good:
            break
        if len(good) > 1:
            gone = {op[1] for op, _, _ in good if op[0] == "mapping"}
            allops = [op for op, _, _ in good if not (op[0] in ("field", "crd") and op[1] in gone)]
            both = apply_ops(cur_cfg, cur_req, allops)
            r = _try(h, [both], want)[0]
            if r is not None:
                cur_cfg, cur_req = both
                last = r
                continue
        op, (cur_cfg, cur_req), last = good[0]
    return cur_cfg, cur_req, last


# ---------------------------------------------------------------- causes

def effective_hostname(m):
    """The host glob Emissary's Python sees: v2 `host` (or `*` without one), else v3alpha1
    `hostname`, else `host`."""
    s = m["spec"]
    if m["form"] in ("v2", "ann2"):
        return s.get("host", "*")
    return s.get("hostname", s.get("host"))


def classify(cfg, req, r, codes=(), emissary_errors=None):
    """Which of issue 14's causes a (minimal) difference shows, by the shape of the case.  A
    guess for the report, checked by a person; None when no rule fits."""
    ms = [m["spec"] for m in cfg["mappings"]]
    forms = [m["form"] for m in cfg["mappings"]]
    feats = req_features(req)
    diff = set(r["diff"])
    errs = json.dumps(emissary_errors or {})
    if "with host_redirect after" in errs or "without host_redirect after" in errs:
        return "N1"
    if "which cannot match anything" in errs and any("hostname" in s and "*" in s.get("host", "") for s in ms):
        return "N2"
    if "Total weight of mappings exceeds 100" in errs or "AMB302" in codes:
        return "D2"
    if "dot-segment" in feats or "percent-escape" in feats:
        return 2
    if any(s.get("host_redirect") and s.get("query_parameters") for s in ms):
        return 8
    if any(s.get("prefix_regex") and s.get("case_sensitive") is False for s in ms):
        return 7
    prefixes = collections.Counter(s.get("prefix") for s in ms)
    if len(ms) >= 2 and max(prefixes.values()) >= 2:
        grouped = [m for m in cfg["mappings"] if prefixes[m["spec"].get("prefix")] >= 2]
        gs = [m["spec"] for m in grouped]
        keys = ("prefix_exact", "case_sensitive", "prefix_regex")
        if len({json.dumps(s.get("regex_rewrite")) for s in gs}) > 1 and "path" in diff:
            return "R1"
        if any(len({json.dumps(s.get(k)) for s in gs}) > 1 for k in keys):
            return 6
        if any(("host" in s) != ("hostname" in s) and m["form"] in ("v3", "ann3") for m, s in zip(grouped, gs)) \
                and len({effective_hostname(m) for m in grouped}) == 1 \
                and len({"host" in s for s in gs}) > 1:
            return 5  # v3alpha1 host: X and hostname: X form one group in Emissary
        if len({effective_hostname(m) for m in grouped}) > 1:
            return 4
        if len({json.dumps([s.get("rewrite"), s.get("regex_rewrite")]) for s in gs}) > 1:
            return 3
    if any(f in ("v2", "ann2") and "*" in s.get("host", "") for f, s in zip(forms, ms)):
        return 5
    if ("host-case" in feats or "host-port" in feats) and diff & {"status", "backend", "location"}:
        return 9
    if any(s.get("prefix_regex") and "rewrite" not in s and "regex_rewrite" not in s for s in ms) \
            and diff <= {"path"}:
        return 1
    if "AMB303" in codes:
        return "D1"
    return None


CAUSES = {
    1: "default rewrite on regex prefixes",
    2: "path normalisation (normalize_path)",
    3: "canary members keep their own rewrite",
    4: "hostname in grouping and order",
    5: "v2 host is a hostname",
    6: "what the group key leaves out (prefix_exact / case_sensitive / prefix_regex)",
    7: "case_sensitive: false on a regex prefix",
    8: "query_parameters on a host_redirect Mapping",
    9: "Host header details (exact match case, :port on globs)",
    "N2": "not in issue 14: v3alpha1 `host` with a `*` beside a `hostname`: Emissary refuses the Mapping",
    "D2": "documented difference: weight totals over 100 are scaled here; Emissary gives the earlier members their cumulative share and the rest nothing",
    "R1": "documented difference (member order): a group's regex_rewrite is its last member's in Emissary's order (rkey), even an empty one",
    "N1": "not in issue 14: host_redirect and plain Mappings on one route (Emissary keeps the first, refuses the later)",
    "D1": "documented difference: weights under 100 with no unweighted member are an error here (AMB303)",
}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emissary", required=True, help="path to a checkout of emissary-ingress/emissary")
    ap.add_argument("--configs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--requests", type=int, default=42, help="requests per configuration")
    ap.add_argument("--samples", type=int, default=16,
                    help="times a request is sent to each side when either side splits traffic")
    ap.add_argument("--batch", type=int, default=25, help="configurations per Envoy")
    ap.add_argument("--minimise", type=int, default=60, help="differences to minimise (in all)")
    ap.add_argument("--per-signature", type=int, default=3,
                    help="differences to minimise per signature (from different configurations)")
    ap.add_argument("--work", default="/tmp/ambassador-differential")
    ap.add_argument("--port-base", type=int, default=27100,
                    help="loopback ports: Emissary side BASE+i, ours BASE+1000+i, echo BASE+2000+k")
    ap.add_argument("--python", help="interpreter for Emissary's venv (default: python3.13, 3.12, 3.11)")
    ap.add_argument("--rebuild", action="store_true", help="cargo build the plugin even if built")
    ap.add_argument("--binary", help="use this kubectl-ambassador instead of target/release's "
                                     "(say in the report which commit it was built from)")
    ap.add_argument("--ours-hcm", action="append", metavar="FIELD=JSON",
                    help="what-if: set a field of our connection managers (e.g. normalize_path=true) "
                         "to see what differences remain once a cause is fixed; not a parity result")
    ap.add_argument("--no-extras", action="store_true",
                    help="routing only: no shadows, CORS, timeouts, retries or header changes")
    ap.add_argument("--no-tls-tcp", action="store_true",
                    help="no TLS Hosts and no TCPMappings (the extras as before they were added)")
    ap.add_argument("--tls-requests", type=int, default=12,
                    help="requests per configuration over TLS or with x-forwarded-proto (plus two "
                         "per TCPMapping port)")
    ap.add_argument("--no-listeners-tls", action="store_true",
                    help="no Listeners beyond 8080/8443, no TLSContexts or TLS settings, no Host "
                         "labels or Hosts in other namespaces, no SNI TCPMappings (the TLS/TCP "
                         "run as before they were added)")
    ap.add_argument("--listener-requests", type=int, default=16,
                    help="requests per configuration to the other Listeners and with TLS client "
                         "options (plus the SNI TCP connections)")
    ap.add_argument("--extra-requests", type=int, default=10,
                    help="requests per configuration for the extras (CORS, timeouts, retries, headers)")
    ap.add_argument("--only", type=int, help="run only configuration N (for a re-check)")
    args = ap.parse_args()
    if args.no_extras or args.no_tls_tcp:
        args.no_listeners_tls = True
    t0 = time.time()
    os.makedirs(args.work, exist_ok=True)
    em = setup_emissary(os.path.abspath(args.emissary), args.work, args.python)
    log("Emissary compiler:", em["version"], em["commit"])
    exe, ours_rev = our_binary(args.rebuild, args.work, args.binary)
    make_certs(args.work)
    log("ours:", ours_rev)
    h = Harness(args, em, exe)

    configs, requests = [], {}
    for i in range(args.configs):
        rng = random.Random("%d/%d" % (args.seed, i))
        cfg = gen.gen_config(rng, i)
        configs.append(cfg)
        requests[i] = gen.gen_requests(cfg, rng, args.requests)
        if not args.no_extras:
            # drawn after the routing part, from generators of their own: the Hosts, Mappings
            # and routing requests stay those of a run without extras
            gen.add_extras(cfg, random.Random("%d/%d/extras" % (args.seed, i)))
            requests[i] += gen.extra_requests(cfg, random.Random("%d/%d/extra-requests" % (args.seed, i)),
                                              args.extra_requests)
            if not args.no_tls_tcp:
                # TLS Hosts and TCPMappings, from generators of their own again
                gen.add_tls_tcp(cfg, random.Random("%d/%d/tls" % (args.seed, i)))
                requests[i] += gen.tls_requests(cfg, requests[i], random.Random(
                    "%d/%d/tls-requests" % (args.seed, i)), args.tls_requests)
                if not args.no_listeners_tls:
                    # Listeners, TLSContexts, SNI TCPMappings: generators of their own again
                    gen.add_listeners_tls(cfg, random.Random("%d/%d/listeners" % (args.seed, i)))
                    requests[i] += gen.listener_tls_requests(
                        cfg, requests[i], random.Random("%d/%d/listener-requests" % (args.seed, i)),
                        args.listener_requests)
    if args.only is not None:
        configs = [configs[args.only]]

    all_res = {}
    compile_time = 0.0
    for b in range(0, len(configs), args.batch):
        batch = [(c["index"], c) for c in configs[b:b + args.batch]]
        tc = time.time()
        compiled = h.compile_all(batch, "configs")
        compile_time += time.time() - tc
        res = h.run_batch(batch, compiled, lambda k: requests[k])
        for key, _ in batch:
            all_res[key] = dict(res[key], emissary_errors=compiled[key]["emissary"].get("errors"),
                                ours_errors=compiled[key]["ours"].get("errors"))
        nreq = sum(len(all_res[k]["results"]) for k in all_res)
        ndiff = sum(1 for k in all_res for r in all_res[k]["results"] if r["diff"])
        log("configs %d/%d, requests %d, differing %d" % (len(all_res), len(configs), nreq, ndiff))

    # counts
    nreq = sum(len(v["results"]) for v in all_res.values())
    nsent = sum(sum(o["n"] for o in r["emissary"]) + sum(o["n"] for o in r["ours"])
                for v in all_res.values() for r in v["results"])
    diffs = [(k, r) for k, v in all_res.items() for r in v["results"] if r["diff"]]
    cfg_with = {k for k, _ in diffs}
    load_fail = {k: v["load"] for k, v in all_res.items() if v["load"]}
    by_sig = collections.OrderedDict()
    for k, r in diffs:
        by_sig.setdefault(signature(configs_by(configs, k), r), []).append((k, r))

    # the results, written before minimising (a minimisation can take long and be stopped)
    pre = {"command": " ".join(["python3", "tests/differential/run.py"] + sys.argv[1:]),
           "emissary": {"version": em["version"], "commit": em["commit"]}, "ours": ours_rev,
           "configs": len(all_res), "requests": nreq, "http_requests_sent": nsent,
           "differing_requests": len(diffs), "configs_with_difference": len(cfg_with),
           "load_failures": load_fail, "seconds_before_minimising": round(time.time() - t0, 1),
           "signatures": [{"signature": list(map(list, s)), "count": len(m),
                           "configs": sorted({x[0] for x in m})} for s, m in by_sig.items()]}
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump({"summary": pre, "results": {str(k): v for k, v in all_res.items()},
                   "configs": configs, "minimisation": "not yet (written before it)"}, f, indent=1)
    log("results written to %s before minimising: %d requests, %d differing in %d configurations"
        % (os.path.join(args.work, "results.json"), nreq, len(diffs), len(cfg_with)))

    # minimise one per signature, then group by cause
    minimal = []
    per_sig = []
    for sig, members in sorted(by_sig.items(), key=lambda kv: -len(kv[1])):
        # up to --per-signature cases from different configurations: one signature can hide
        # several causes
        chosen, seen_cfg = [], set()
        for k, r in members[:: max(1, len(members) // (3 * args.per_signature))]:
            if k not in seen_cfg and len(chosen) < args.per_signature:
                seen_cfg.add(k)
                chosen.append((sig, members, k, r))
        per_sig.append(chosen)
    # round robin: the first case of every signature (largest first), then the second ones...
    picks = [lst[i] for i in range(args.per_signature) for lst in per_sig if i < len(lst)]
    for sig, members, k, r in picks[: args.minimise]:
        cfg = configs_by(configs, k)
        log("minimising %s (%d requests), from config %d" % (sig, len(members), k))
        tm = time.time()
        mcfg, mreq, last = minimise(h, cfg, r["req"], r["diff"])
        mres = r if last is None else last
        mcomp = h.compile_all([("final", mcfg)], "minimal-%d" % len(minimal))["final"]
        lint = [x for x in mcomp["ours"].get("errors", []) + mcomp["ours"].get("warnings", [])
                if x["code"] != "AMB409"]  # "Service not among the given manifests": always
        codes = sorted({x["code"] for x in lint})
        cause = classify(mcfg, mreq, mres, codes, mcomp["emissary"].get("errors"))
        minimal.append({"lint": lint, "from_config": k,
                        "emissary_errors": mcomp["emissary"].get("errors"),
                        "elapsed": round(time.time() - tm, 1),"signature": list(map(list, sig)), "count": len(members),
                        "configs": sorted({m[0] for m in members}), "cause": cause,
                        "config": mcfg, "request": mreq, "result": mres,
                        "emissary_yaml": gen.render_emissary(mcfg), "ours_yaml": gen.render_ours(mcfg)})

    elapsed = time.time() - t0
    summary = {
        "command": " ".join(["python3", "tests/differential/run.py"] + sys.argv[1:]),
        "ours_hcm_patch": h.hcm_patch,
        "emissary": {"version": em["version"], "commit": em["commit"]},
        "ours": ours_rev, "envoy": subprocess.run(["envoy", "--version"], capture_output=True,
                                                   text=True).stdout.strip().split("version:")[-1].strip(),
        "configs": len(all_res), "requests": nreq, "http_requests_sent": nsent,
        "differing_requests": len(diffs), "configs_with_difference": len(cfg_with),
        "load_failures": load_fail, "seconds": round(elapsed, 1), "compile_seconds": round(compile_time, 1),
        "signatures": [{"signature": list(map(list, s)), "count": len(m)} for s, m in by_sig.items()],
        "minimal": minimal,
    }
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump({"summary": summary, "results": {str(k): v for k, v in all_res.items()},
                   "configs": configs}, f, indent=1)
    with open(os.path.join(args.work, "summary.md"), "w") as f:
        f.write(render_summary(summary))
    print(render_summary(summary))


def configs_by(configs, k):
    for c in configs:
        if c["index"] == k:
            return c
    raise KeyError(k)


def render_summary(s):
    out = ["# Differential run", "",
           "command: `%s`" % s["command"],
           "Emissary: commit %s; ours: %s; Envoy %s" % (s["emissary"]["commit"], s["ours"], s["envoy"]),
           "what-if patch of our connection managers: %s" % json.dumps(s.get("ours_hcm_patch") or None),
           "configurations: %d, requests: %d (HTTP requests sent, both sides, with canary sampling: %d)"
           % (s["configs"], s["requests"], s["http_requests_sent"]),
           "differing requests: %d (%.1f %%), configurations with a difference: %d (%.1f %%)"
           % (s["differing_requests"], 100.0 * s["differing_requests"] / max(1, s["requests"]),
              s["configs_with_difference"], 100.0 * s["configs_with_difference"] / max(1, s["configs"])),
           "configurations one side could not load: %d" % len(s["load_failures"]),
           "run time: %.0f s (compiling %.0f s)" % (s["seconds"], s["compile_seconds"]), ""]
    out.append("## Signatures (differing fields, request features): requests")
    for sg in s["signatures"]:
        out.append("- %s: %d" % (json.dumps(sg["signature"]), sg["count"]))
    out.append("")
    for i, m in enumerate(s["minimal"]):
        out.append("## Minimal case %d: cause %s (%s), %d requests, signature %s" % (
            i + 1, m["cause"], CAUSES.get(m["cause"], "unclassified"), m["count"], json.dumps(m["signature"])))
        out.append("")
        out.append("Request: `%s %s` Host `%s` headers %s" % (m["request"]["method"], m["request"]["path"],
                                                           m["request"]["host"], json.dumps(m["request"]["headers"])))
        out.append("Emissary: %s" % json.dumps(m["result"]["emissary"]))
        out.append("Ours:     %s" % json.dumps(m["result"]["ours"]))
        if m.get("lint"):
            out.append("Our lint: %s" % "; ".join("%s %s" % (x["code"], x["message"]) for x in m["lint"]))
        if m.get("emissary_errors"):
            out.append("Emissary errors: %s" % json.dumps(m["emissary_errors"])[:800])
        out.append("")
        out.append("Our input:\n```yaml\n%s```" % m["ours_yaml"].split("---\n", 3)[-1])
        out.append("")
    for k, v in sorted(s["load_failures"].items()):
        out.append("- config %s: %s" % (k, json.dumps(v)[:600]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
