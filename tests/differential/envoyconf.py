"""Turn each compiler's output into listeners and clusters for one static Envoy bootstrap.

Both sides are kept as emitted (routes, normalize_path, rewrites, redirects, runtime fractions),
with only these changes:
  * only the listener for port 8080 is kept (its TLS filter chains included), and those on the
    ports given (`tcp_ports`: TCPMapping ports and the other Listeners' ports); each is bound to
    a loopback port of this configuration;
  * our certificates come over SDS: they are inlined from the Secrets dump (Emissary's are
    PEM files its compiler wrote, kept as they are);
  * every cluster is renamed `<prefix><name>` (many configurations share one Envoy) and its
    endpoints are replaced by one loopback echo backend, 127.0.0.1:<echo port>, chosen by the
    cluster's original host:port (with " +tls" when it originates TLS), so the backend that
    answers names the upstream service; upstream TLS (transport_socket) is dropped since the
    echo backends speak cleartext;
  * our listeners take their route configuration from RDS: it is inlined into the connection
    manager (`route_config`);
  * filters named without a typed_config (Emissary's Envoy still looks extensions up by name,
    Envoy 1.40 no longer does) get the typed_config of that name.
"""

import copy

TYPED = {
    "envoy.filters.listener.tls_inspector":
        "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    "envoy.filters.listener.proxy_protocol":
        "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
    "envoy.filters.http.cors": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
    "envoy.filters.http.router": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    "envoy.filters.http.grpc_web": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
    "envoy.filters.http.health_check":
        "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
    "envoy.filters.http.buffer": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
    "envoy.filters.http.gzip": "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor",
}

HCM = "envoy.filters.network.http_connection_manager"


def _fix_typed(o):
    if isinstance(o, dict):
        if isinstance(o.get("name"), str) and o["name"] in TYPED and "typed_config" not in o \
                and "config" not in o and "config_discovery" not in o:
            o["typed_config"] = {"@type": TYPED[o["name"]]}
        for v in o.values():
            _fix_typed(v)
    elif isinstance(o, list):
        for v in o:
            _fix_typed(v)


def canon_service(host, port):
    """The upstream a cluster stands for, the same on both sides: host without the default
    namespace or the cluster domain, and the port."""
    h = host.lower()
    for suf in (".svc.cluster.local", ".svc"):
        if h.endswith(suf):
            h = h[: -len(suf)]
    if h.endswith(".default"):
        h = h[: -len(".default")]
    return "%s:%s" % (h, port)


def cluster_targets(cluster, eds=None):
    """(host, port) pairs a cluster sends to, from its load_assignment (or EDS endpoints)."""
    la = cluster.get("load_assignment") or (eds or {}).get(cluster.get("name"))
    out = []
    if la:
        for ep in la.get("endpoints", []):
            for lb in ep.get("lb_endpoints", []):
                sa = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
                if sa:
                    out.append((sa.get("address"), sa.get("port_value")))
    return out


def _rename_clusters_in_routes(rc, rename):
    def walk(o):
        if isinstance(o, dict):
            for k, v in list(o.items()):
                if k == "cluster" and isinstance(v, str) and v in rename:
                    o[k] = rename[v]
                elif k == "weighted_clusters" and isinstance(v, dict):
                    for c in v.get("clusters", []):
                        if c.get("name") in rename:
                            c["name"] = rename[c["name"]]
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(rc)


def _inline_sds(o, secrets):
    """Our listeners take certificates over SDS: each `tls_certificate_sds_secret_configs` is
    replaced with the certificate of that name from the Secrets dump, and a
    `validation_context_sds_secret_config` (a client certificates' CA) with the validation
    context of that name (a static bootstrap has no SDS server)."""
    if isinstance(o, dict):
        ctc = o.get("common_tls_context")
        if isinstance(ctc, dict) and "tls_certificate_sds_secret_configs" in ctc:
            refs = ctc.pop("tls_certificate_sds_secret_configs")
            ctc["tls_certificates"] = [secrets[r["name"]]["tls_certificate"] for r in refs
                                       if r.get("name") in secrets
                                       and "tls_certificate" in secrets[r["name"]]]
        if isinstance(ctc, dict) and "validation_context_sds_secret_config" in ctc:
            # the CA of client certificates (`ca_secret`), over SDS as well
            ref = ctc.pop("validation_context_sds_secret_config")
            vc = secrets.get(ref.get("name"), {}).get("validation_context")
            if vc is not None:
                ctc["validation_context"] = vc
        for v in o.values():
            _inline_sds(v, secrets)
    elif isinstance(o, list):
        for v in o:
            _inline_sds(v, secrets)


def prepare(listeners, clusters, route_configs, prefix, listen_port, echo_port_of, eds=None,
            hcm_patch=None, tcp_ports=None, secrets=None):
    """listeners: list of Listener dicts; clusters: list of Cluster dicts; route_configs: name ->
    RouteConfiguration (for RDS listeners).  echo_port_of(identity) -> port.
    Returns (listeners, clusters, {cluster name: identity})."""
    rename = {}
    ident = {}
    out_clusters = []
    for c in clusters:
        c = copy.deepcopy(c)
        targets = cluster_targets(c, eds)
        identity = canon_service(*targets[0]) if targets else "unknown:" + c["name"]
        if c.get("transport_socket") or c.get("transport_socket_matches"):
            # upstream TLS is dropped below (the echo backends speak cleartext), but whether a
            # side originates it shows as another backend
            identity += " +tls"
        new = prefix + c["name"]
        rename[c["name"]] = new
        ident[new] = identity
        port = echo_port_of(identity)
        c["name"] = new
        c.pop("@type", None)
        c.pop("eds_cluster_config", None)
        c.pop("transport_socket", None)
        c.pop("alt_stat_name", None)
        if c.get("type") in (None, "EDS"):
            c["type"] = "STATIC"
        c["load_assignment"] = {"cluster_name": new, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        out_clusters.append(c)
    out_listeners = []
    for l in listeners:
        sa = l.get("address", {}).get("socket_address", {})
        port = sa.get("port_value")
        if port == 8080:
            new_port = listen_port
        elif port in (tcp_ports or {}):
            # a TCPMapping's listener, on a loopback port of its own
            new_port = tcp_ports[port]
        else:
            continue
        l = copy.deepcopy(l)
        l.pop("@type", None)
        l["name"] = prefix + l.get("name", "listener")
        l["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": new_port}}
        _inline_sds(l, secrets or {})
        for fc in l.get("filter_chains", []):
            for f in fc.get("filters", []):
                if f.get("name") == "envoy.filters.network.tcp_proxy":
                    _rename_clusters_in_routes(f.get("typed_config", {}), rename)
        for fc in l.get("filter_chains", []):
            for f in fc.get("filters", []):
                if f.get("name") != HCM:
                    continue
                tc = f.get("typed_config", {})
                if "rds" in tc:
                    name = tc["rds"].get("route_config_name")
                    rc = copy.deepcopy(route_configs.get(name, {"name": name}))
                    rc.pop("@type", None)
                    del tc["rds"]
                    tc["route_config"] = rc
                if "route_config" in tc:
                    _rename_clusters_in_routes(tc["route_config"], rename)
                # access logs to /dev/fd/1 would flood our log; keep them off
                tc.pop("access_log", None)
                # what-if runs only (run.py --ours-hcm): e.g. normalize_path=true
                tc.update(hcm_patch or {})
        _fix_typed(l)
        out_listeners.append(l)
    return out_listeners, out_clusters, ident


def bootstrap(listeners, clusters, runtime=None, admin_port=0):
    b = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    if runtime:
        b["layered_runtime"] = runtime
    return b
