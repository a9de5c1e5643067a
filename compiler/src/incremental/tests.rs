//! The session's output against compiling from scratch, over random edits.

use std::collections::BTreeMap;

use super::{Session, TYPES};
use crate::front::Options;
use crate::lower::LowerOptions;
use crate::source::Sources;

/// xorshift64*: a small, seeded generator, so every failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Debug)]
struct Mapping {
    name: String,
    namespace: &'static str,
    prefix: String,
    hostname: &'static str,
    service: &'static str,
    weight: Option<u32>,
    precedence: i64,
    shadow: bool,
    method: Option<&'static str>,
    header: Option<&'static str>,
    resolver: Option<&'static str>,
    timeout_ms: Option<u32>,
    rewrite: Option<&'static str>,
    upgrade: bool,
    /// 0: checked; 1: `bypass_auth`; 2: `auth_context_extensions` (two, with CORS).
    auth: u8,
    /// Rate limit labels: 0 none, 1 in the default domain, 2 in another domain.
    labels: u8,
}

impl Mapping {
    fn random(rng: &mut Rng, name: String) -> Mapping {
        let prefixes = ["/a/", "/b/", "/c/", "/a/b/", "/api/", "/api/v1/", "/x", "/"];
        Mapping {
            labels: match rng.below(8) {
                0 => 1,
                1 => 2,
                _ => 0,
            },
            auth: match rng.below(10) {
                0 => 1,
                1 => 2,
                _ => 0,
            },
            name,
            namespace: if rng.chance(80) { "default" } else { "team" },
            prefix: if rng.chance(3) {
                "noslash".into()
            } else if rng.chance(70) {
                prefixes[rng.below(prefixes.len())].into()
            } else {
                format!("/p{}/", rng.below(40))
            },
            hostname: rng.pick(&["*", "*", "*", "a.example.com", "*.example.com", "b.test"]),
            service: rng.pick(&[
                "web",
                "web:8080",
                "api.team:9000",
                "127.0.0.1:9001",
                "127.0.0.1:9002",
                "https://secure",
                "missing",
                "bad:port:1",
            ]),
            weight: match rng.below(10) {
                0 => Some(10),
                1 => Some(50),
                2 => Some(150),
                _ => None,
            },
            precedence: if rng.chance(10) { 1 } else { 0 },
            shadow: rng.chance(4),
            method: rng.chance(10).then(|| rng.pick(&["POST", "GET"])),
            header: rng.chance(10).then(|| rng.pick(&["x-a", "x-b"])),
            resolver: rng.chance(8).then_some("endpoint"),
            timeout_ms: rng.chance(20).then(|| 1000 * (1 + rng.below(3) as u32)),
            rewrite: rng.chance(15).then(|| rng.pick(&["/", "/v2/"])),
            upgrade: rng.chance(5),
        }
    }

    /// The spec lines, indented by `pad`.
    fn spec(&self, pad: &str) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(pad);
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("prefix: {}", self.prefix));
        line(format!("hostname: \"{}\"", self.hostname));
        line(format!("service: \"{}\"", self.service));
        if let Some(w) = self.weight {
            line(format!("weight: {w}"));
        }
        if self.precedence != 0 {
            line(format!("precedence: {}", self.precedence));
        }
        if self.shadow {
            line("shadow: true".into());
        }
        if let Some(m) = self.method {
            line(format!("method: {m}"));
        }
        if let Some(h) = self.header {
            line(format!("headers:\n{pad}  {h}: \"1\""));
        }
        if let Some(r) = self.resolver {
            line(format!("resolver: {r}"));
        }
        if let Some(t) = self.timeout_ms {
            line(format!("timeout_ms: {t}"));
        }
        if let Some(r) = self.rewrite {
            line(format!("rewrite: \"{r}\""));
        }
        if self.upgrade {
            line("allow_upgrade:\n".to_string() + pad + "- websocket");
        }
        match self.labels {
            1 => line(format!("labels:\n{pad}  ambassador:\n{pad}  - per_user:\n{pad}    - remote_address\n{pad}    - user:\n{pad}        header: x-user")),
            2 => line(format!("labels:\n{pad}  other:\n{pad}  - g:\n{pad}    - source_cluster")),
            _ => {}
        }
        match self.auth {
            1 => line("bypass_auth: true".into()),
            2 => {
                line(format!(
                    "auth_context_extensions:\n{pad}  tier: gold\n{pad}  tenant: blue"
                ));
                line(format!("cors:\n{pad}  origins: [\"https://app.example\"]"));
            }
            _ => {}
        }
        s
    }
}

#[derive(Clone, Debug)]
enum File {
    /// A `getambassador.io/v3alpha1` Mapping.
    Crd(Mapping),
    /// A Service with Mappings in its annotation.
    Service {
        name: String,
        namespace: &'static str,
        mappings: Vec<Mapping>,
    },
    Host(&'static str),
    /// A Host with a `tlsSecret` and an insecure action.
    TlsHost(&'static str, &'static str),
    /// A Listener: port, protocol, security model, namespace binding.
    Listener(u16, &'static str, &'static str, &'static str),
    Module(u32),
    /// A RateLimitService: 0 usable, 1 without a protocol version.
    RateLimitService(u8),
    /// An AuthService: 0 HTTP, 1 HTTP with other settings, 2 gRPC v3, 3 gRPC without a
    /// protocol version (misconfigured).
    AuthService(u8),
    /// 0 a usable LogService, 1 a LogService without a protocol version, 2 a zipkin
    /// TracingService.
    Observe(u8),
    Resolver,
    /// Endpoints of the `web` Service.
    Endpoints(u8),
    Broken,
}

impl File {
    fn text(&self) -> String {
        match self {
            File::Crd(m) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata:\n  name: {}\n  namespace: {}\nspec:\n{}",
                m.name,
                m.namespace,
                m.spec("  ")
            ),
            File::Service {
                name,
                namespace,
                mappings,
            } => {
                let mut a = String::new();
                for (i, m) in mappings.iter().enumerate() {
                    if i > 0 {
                        a.push_str("      ---\n");
                    }
                    a.push_str(&format!(
                        "      apiVersion: getambassador.io/v3alpha1\n      kind: Mapping\n      name: {}\n{}",
                        m.name,
                        m.spec("      ")
                    ));
                }
                format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations:\n    getambassador.io/config: |\n{a}spec:\n  ports:\n  - port: 80\n"
                )
            }
            File::Host(h) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: host-{}\n  namespace: default\nspec:\n  hostname: \"{h}\"\n",
                h.replace(['*', '.'], "x")
            ),
            File::TlsHost(h, action) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata:\n  name: tls-{}\n  namespace: default\nspec:\n  hostname: \"{h}\"\n  tlsSecret: {{name: cert}}\n  requestPolicy: {{insecure: {{action: {action}}}}}\n",
                h.replace(['*', '.'], "x")
            ),
            File::Listener(port, protocol, model, from) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata:\n  name: l{port}\n  namespace: default\nspec:\n  port: {port}\n  protocol: {protocol}\n  securityModel: {model}\n  hostBinding: {{namespace: {{from: {from}}}}}\n"
            ),
            File::Module(t) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata:\n  name: ambassador\n  namespace: default\nspec:\n  config:\n    cluster_request_timeout_ms: {t}\n"
            ),
            File::RateLimitService(k) => format!(
                "apiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata:\n  name: rl{k}\n  namespace: default\nspec:\n  service: ratelimit:8081\n{}",
                if *k == 0 { "  protocol_version: v3\n" } else { "" }
            ),
            File::AuthService(k) => {
                let spec = match k {
                    0 => "  auth_service: auth:3000\n  path_prefix: /extauth\n".to_string(),
                    1 => "  auth_service: auth:3000\n  timeout_ms: 900\n  allowed_request_headers: [x-a]\n".to_string(),
                    2 => "  auth_service: auth-grpc:50051\n  proto: grpc\n  protocol_version: v3\n".to_string(),
                    _ => "  auth_service: auth-grpc:50051\n  proto: grpc\n".to_string(),
                };
                format!("apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata:\n  name: auth{k}\n  namespace: default\nspec:\n{spec}")
            }
            File::Observe(k) => match k {
                0 | 1 => format!(
                    "apiVersion: getambassador.io/v3alpha1\nkind: LogService\nmetadata:\n  name: als{k}\n  namespace: default\nspec:\n  service: als:9001\n  driver: http\n  grpc: true\n{}",
                    if *k == 0 { "  protocol_version: v3\n" } else { "" }
                ),
                _ => "apiVersion: getambassador.io/v3alpha1\nkind: TracingService\nmetadata:\n  name: tracing\n  namespace: default\nspec:\n  service: zipkin:9411\n  driver: zipkin\n".into(),
            },
            File::Resolver => "apiVersion: getambassador.io/v3alpha1\nkind: KubernetesEndpointResolver\nmetadata:\n  name: endpoint\n  namespace: default\n".into(),
            File::Endpoints(n) => format!(
                "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: web\n  namespace: default\nsubsets:\n- addresses:\n  - ip: 10.0.0.{n}\n  ports:\n  - port: 8080\n"
            ),
            File::Broken => "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: [unclosed\n".into(),
        }
    }
}

struct World {
    rng: Rng,
    files: Vec<(String, File)>,
    next: usize,
}

impl World {
    fn name(&mut self) -> String {
        self.next += 1;
        format!("m{}", self.next)
    }

    fn new_file(&mut self) -> (String, File) {
        self.next += 1;
        let file_name = format!("f{:04}.yaml", self.next);
        let file = match self.rng.below(12) {
            0..=5 => {
                let n = self.name();
                File::Crd(Mapping::random(&mut self.rng, n))
            }
            6..=9 => {
                let count = 1 + self.rng.below(3);
                let mut mappings = Vec::new();
                for _ in 0..count {
                    let n = self.name();
                    mappings.push(Mapping::random(&mut self.rng, n));
                }
                File::Service {
                    name: self.name(),
                    namespace: "default",
                    mappings,
                }
            }
            10 => match self.rng.below(4) {
                0 => File::TlsHost(
                    self.rng
                        .pick(&["a.example.com", "*.example.com", "b.example.com"]),
                    self.rng.pick(&["Route", "Redirect", "Reject"]),
                ),
                1 => File::Listener(
                    [8080, 8443, 9000][self.rng.below(3)],
                    self.rng.pick(&["HTTP", "HTTPS", "HTTPSPROXY"]),
                    self.rng.pick(&["XFP", "SECURE", "INSECURE"]),
                    self.rng.pick(&["ALL", "SELF"]),
                ),
                _ => File::Host(self.rng.pick(&["a.example.com", "*.example.com", "*"])),
            },
            _ => File::Endpoints(1 + self.rng.below(3) as u8),
        };
        (file_name, file)
    }

    /// One random edit; mostly edits to Mappings, sometimes something that changes the
    /// context.
    fn edit(&mut self) {
        let n = self.files.len();
        match self.rng.below(20) {
            0..=9 if n > 0 => {
                // Change one field of one Mapping.
                let i = self.rng.below(n);
                let fresh = {
                    let name = self.name();
                    Mapping::random(&mut self.rng, name)
                };
                let which = self.rng.below(8);
                let m = match &mut self.files[i].1 {
                    File::Crd(m) => Some(m),
                    File::Service { mappings, .. } if !mappings.is_empty() => {
                        let j = self.rng.below(mappings.len());
                        Some(&mut mappings[j])
                    }
                    _ => None,
                };
                if let Some(m) = m {
                    match which {
                        0 => m.prefix = fresh.prefix,
                        1 => m.service = fresh.service,
                        2 => m.weight = fresh.weight,
                        3 => m.precedence = fresh.precedence,
                        4 => m.hostname = fresh.hostname,
                        5 => m.shadow = fresh.shadow,
                        6 => m.timeout_ms = fresh.timeout_ms,
                        7 if fresh.auth != 0 => m.auth = fresh.auth,
                        _ => m.upgrade = !m.upgrade,
                    }
                }
            }
            10..=12 => {
                let f = self.new_file();
                let at = self.rng.below(n + 1);
                self.files.insert(at, f);
            }
            13..=14 if n > 0 => {
                let i = self.rng.below(n);
                self.files.remove(i);
            }
            15 if n > 0 => {
                // A second object with an existing Mapping's name.
                let i = self.rng.below(n);
                if let File::Crd(m) = &self.files[i].1 {
                    let mut copy = m.clone();
                    copy.prefix = "/dup/".into();
                    self.next += 1;
                    self.files
                        .push((format!("f{:04}.yaml", self.next), File::Crd(copy)));
                }
            }
            16 => {
                self.next += 1;
                let f = match self.rng.below(7) {
                    0 => File::Module(1000 + 1000 * self.rng.below(3) as u32),
                    1 => File::Resolver,
                    2 | 3 => File::AuthService(self.rng.below(4) as u8),
                    4 => File::RateLimitService(self.rng.below(2) as u8),
                    5 => File::Observe(self.rng.below(3) as u8),
                    _ => File::Broken,
                };
                self.files.push((format!("f{:04}.yaml", self.next), f));
            }
            17 if n > 1 => {
                // Two files swap places.
                let (a, b) = (self.rng.below(n), self.rng.below(n));
                self.files.swap(a, b);
            }
            _ => {
                // Rename a Mapping (a new object, the old one gone).
                if n > 0 {
                    let i = self.rng.below(n);
                    let name = self.name();
                    if let File::Crd(m) = &mut self.files[i].1 {
                        m.name = name;
                    }
                }
            }
        }
    }

    fn sources(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|(n, f)| (n.clone(), f.text()))
            .collect()
    }
}

type Findings = Vec<(String, u32, u32, &'static str, String)>;

/// The type and name of each resource an update changed.
fn changed(update: &super::Update) -> Vec<(&'static str, &str)> {
    update
        .deltas
        .iter()
        .map(|d| (d.type_url, d.name.as_str()))
        .collect()
}

/// Compiling from scratch: every resource's bytes by type and name, and the findings.
fn from_scratch(sources: &[(String, String)]) -> (BTreeMap<(usize, String), Vec<u8>>, Findings) {
    let mut s = Sources::new();
    for (name, text) in sources {
        s.add(name.clone(), text.clone());
    }
    let c = crate::compile(&s, &Options::default(), &LowerOptions::default());
    let res = crate::envoy_resources(&c);
    let mut out = BTreeMap::new();
    for (t, type_url) in TYPES.iter().enumerate() {
        for (name, _, any) in res
            .packed(type_url)
            .expect("a type the back end emits")
            .resources
        {
            out.insert((t, name.to_string()), any.value.clone());
        }
    }
    let findings = c
        .diagnostics
        .iter()
        .map(|d| {
            let (file, line, col) = d.span.map_or((String::new(), 0, 0), |sp| {
                (s.name(sp.file).to_string(), sp.start.line, sp.start.column)
            });
            (file, line, col, d.code.as_str(), d.message.clone())
        })
        .collect();
    (out, sorted(findings))
}

fn sorted(mut f: Findings) -> Findings {
    f.sort();
    f
}

fn session_findings(session: &mut Session) -> Findings {
    let diags = session.diagnostics().to_vec();
    sorted(
        diags
            .iter()
            .map(|d| {
                let (file, line, col) = d.span.map_or((String::new(), 0, 0), |sp| {
                    (
                        session.file_name(sp.file).to_string(),
                        sp.start.line,
                        sp.start.column,
                    )
                });
                (file, line, col, d.code.as_str(), d.message.clone())
            })
            .collect(),
    )
}

fn run(seed: u64, start_files: usize, edits: usize) -> (usize, usize) {
    let mut world = World {
        rng: Rng(seed),
        files: Vec::new(),
        next: 0,
    };
    for _ in 0..start_files {
        let f = world.new_file();
        world.files.push(f);
    }
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let mut held: BTreeMap<(usize, String), Vec<u8>> = BTreeMap::new();
    // The admission view, brought up to date with each update as the webhook does.
    let mut view = crate::context::Context::default();
    let (mut fast, mut full) = (0, 0);
    for step in 0..=edits {
        if step > 0 {
            world.edit();
        }
        let sources = world.sources();
        let update = session.update(sources.clone());
        if update.compiled {
            if update.full {
                full += 1;
            } else {
                fast += 1;
            }
        }
        for d in update.deltas {
            let t = TYPES
                .iter()
                .position(|t| *t == d.type_url)
                .expect("a known type");
            match d.resource {
                Some(p) => {
                    assert_eq!(p.name, d.name);
                    held.insert((t, d.name), p.any.value);
                }
                None => {
                    assert!(
                        held.remove(&(t, d.name.clone())).is_some(),
                        "seed {seed} step {step}: removed `{}`, which was never sent",
                        d.name
                    );
                }
            }
        }
        if update.compiled {
            view.apply(&session, &update.view);
            assert_eq!(
                view.fingerprint(),
                crate::context::Context::from_session(&session).fingerprint(),
                "seed {seed} step {step} (full: {}): the admission view differs from one indexed from scratch",
                update.full
            );
        }
        let (want, want_findings) = from_scratch(&sources);
        let names = |m: &BTreeMap<(usize, String), Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&held),
            names(&want),
            "seed {seed} step {step} (full: {}): resource names differ",
            update.full
        );
        for (k, v) in &want {
            assert!(
                held.get(k) == Some(v),
                "seed {seed} step {step} (full: {}): `{}` differs from a compile from scratch",
                update.full,
                k.1
            );
        }
        // Findings are asked for after most updates, not all: checks left over from an
        // update must still run at the next request.
        if step % 4 == 1 {
            continue;
        }
        assert_eq!(
            session_findings(&mut session),
            want_findings,
            "seed {seed} step {step} (full: {}): findings differ",
            update.full
        );
    }
    (fast, full)
}

#[test]
fn a_session_agrees_with_compiling_from_scratch_over_random_edits() {
    let (mut fast, mut full) = (0, 0);
    for seed in 1..=40u64 {
        let (a, b) = run(
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            12 + (seed as usize % 20),
            60,
        );
        fast += a;
        full += b;
    }
    // Both paths must have been taken often, or the comparison proves little.
    assert!(fast > 500, "only {fast} updates took the incremental path");
    assert!(full > 200, "only {full} updates took the full pass");
}

#[test]
fn an_update_with_no_change_compiles_nothing() {
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let files = vec![(
        "a.yaml".to_string(),
        File::Crd(Mapping::random(&mut Rng(7), "a".into())).text(),
    )];
    let first = session.update(files.clone());
    assert!(first.compiled && first.full && !first.deltas.is_empty());
    let again = session.update(files);
    assert!(!again.compiled && again.deltas.is_empty());
}

#[test]
fn editing_one_mapping_resends_one_route_configuration_and_reads_one_file() {
    let mut rng = Rng(11);
    let mut files: Vec<(String, File)> = (0..200)
        .map(|i| {
            let mut m = Mapping::random(&mut rng, format!("m{i}"));
            m.prefix = format!("/m{i}/");
            m.service = "127.0.0.1:9001";
            m.weight = None;
            m.shadow = false;
            m.hostname = "*";
            (format!("f{i}.yaml"), File::Crd(m))
        })
        .collect();
    let sources = |files: &[(String, File)]| {
        files
            .iter()
            .map(|(n, f)| (n.clone(), f.text()))
            .collect::<Vec<_>>()
    };
    let mut session = Session::new(Options::default(), LowerOptions::default());
    session.update(sources(&files));
    if let File::Crd(m) = &mut files[7].1 {
        m.prefix = "/moved/".into();
    }
    let update = session.update(sources(&files));
    assert!(!update.full, "a Mapping edit took the full pass");
    assert_eq!(update.files_read, 1);
    let changed = changed(&update);
    assert_eq!(
        changed,
        vec![(crate::envoy::ROUTE_TYPE, "ambassador-listener-8080-http")]
    );
}

#[test]
fn new_endpoints_resend_one_assignment_without_a_full_pass() {
    let mut m = Mapping::random(&mut Rng(5), "web".into());
    m.prefix = "/web/".into();
    m.service = "web";
    m.resolver = Some("endpoint");
    m.weight = None;
    m.shadow = false;
    m.hostname = "*";
    let service = File::Service {
        name: "web".into(),
        namespace: "default",
        mappings: vec![m],
    };
    let files = |ip: u8| {
        vec![
            ("a.yaml".to_string(), service.text()),
            ("b.yaml".to_string(), File::Resolver.text()),
            ("c.yaml".to_string(), File::Endpoints(ip).text()),
        ]
    };
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let first = session.update(files(1));
    assert!(first.full);
    let update = session.update(files(2));
    assert!(!update.full, "an endpoints change took the full pass");
    let changed = changed(&update);
    assert_eq!(
        changed,
        vec![(crate::envoy::ENDPOINT_TYPE, "default/web:80")],
        "{:?}",
        session.diagnostics()
    );
    let assignment = update.deltas[0].resource.as_ref().unwrap();
    let (want, _) = from_scratch(&files(2));
    assert_eq!(
        Some(&assignment.any.value),
        want.get(&(1, "default/web:80".to_string()))
    );
}

/// The files of a small configuration protected by `auth` (an AuthService's text).
fn protected(auth: &str) -> Vec<(String, String)> {
    let mut files = vec![("auth.yaml".to_string(), auth.to_string())];
    for (i, a) in [0u8, 1, 2].into_iter().enumerate() {
        let mut m = Mapping::random(&mut Rng(3 + i as u64), format!("m{i}"));
        m.prefix = format!("/m{i}/");
        m.service = "127.0.0.1:9001";
        m.weight = None;
        m.shadow = false;
        m.hostname = "*";
        m.auth = a;
        files.push((format!("m{i}.yaml"), File::Crd(m).text()));
    }
    files.push((
        "host.yaml".to_string(),
        File::TlsHost("a.example.com", "Redirect").text(),
    ));
    files
}

#[test]
fn an_auth_service_change_resends_the_listeners_and_nothing_else() {
    let auth = |timeout: u32, proto: &str| {
        format!("apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata:\n  name: auth\n  namespace: default\nspec:\n  auth_service: auth:3000\n  timeout_ms: {timeout}\n{proto}")
    };
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let first = session.update(protected(&auth(1000, "")));
    assert!(first.full);
    let routes_before: Vec<Vec<u8>> = first
        .deltas
        .iter()
        .filter(|d| d.type_url == crate::envoy::ROUTE_TYPE)
        .map(|d| d.resource.as_ref().unwrap().any.value.clone())
        .collect();
    assert!(!routes_before.is_empty());

    // Another timeout: only the listeners' filter changes.
    let update = session.update(protected(&auth(2000, "")));
    let types: Vec<&str> = update.deltas.iter().map(|d| d.type_url).collect();
    assert!(!types.is_empty());
    assert!(
        types.iter().all(|t| *t == crate::envoy::LISTENER_TYPE),
        "{:?}",
        changed(&update)
    );

    // Misconfigured (gRPC without v3): the listeners refuse, the auth cluster goes, and the
    // routes are the same bytes.
    let broken = session.update(protected(&auth(2000, "  proto: grpc\n")));
    let types: Vec<&str> = broken.deltas.iter().map(|d| d.type_url).collect();
    assert!(types.contains(&crate::envoy::LISTENER_TYPE));
    assert!(
        types
            .iter()
            .all(|t| *t == crate::envoy::LISTENER_TYPE || *t == crate::envoy::CLUSTER_TYPE),
        "{:?}",
        changed(&broken)
    );
    assert!(session
        .diagnostics()
        .iter()
        .any(|d| d.code == crate::diag::Code::AuthProtocolVersion));
    let (scratch, _) = from_scratch(&protected(&auth(2000, "  proto: grpc\n")));
    let routes_now: Vec<Vec<u8>> = scratch
        .iter()
        .filter(|((t, _), _)| TYPES[*t] == crate::envoy::ROUTE_TYPE)
        .map(|(_, v)| v.clone())
        .collect();
    let mut a = routes_before.clone();
    let mut b = routes_now;
    a.sort();
    b.sort();
    assert_eq!(a, b, "the routes changed with the AuthService");
}

#[test]
fn routes_with_two_filter_settings_encode_the_same_every_time() {
    let auth = "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\nmetadata:\n  name: auth\n  namespace: default\nspec:\n  auth_service: auth:3000\n";
    // Each compile builds its maps afresh (new `HashMap` seeds): the bytes must not move.
    let (first, _) = from_scratch(&protected(auth));
    for _ in 0..20 {
        let (again, _) = from_scratch(&protected(auth));
        assert_eq!(first, again);
    }
}

/// Found by the `session` fuzz target: two Listeners of one name in two namespaces were two
/// Envoy listeners of one name; compiling from scratch kept the first (as a `Collection`
/// does) and the session's deltas the last, and nothing said so. The later one is now left
/// out with AMB425, and both ways give the same listener.
#[test]
fn listeners_of_one_name_give_one_listener_and_an_error_both_ways() {
    let listener = |ns: &str, port: u16| {
        format!("---\napiVersion: getambassador.io/v3alpha1\nkind: Listener\nmetadata: {{name: edge, namespace: {ns}}}\nspec: {{port: {port}, protocol: HTTP, securityModel: XFP, hostBinding: {{namespace: {{from: ALL}}}}}}\n")
    };
    let files = vec![
        ("a.yaml".to_string(), listener("default", 8443)),
        ("b.yaml".to_string(), listener("shop", 8080)),
        (
            "c.yaml".to_string(),
            File::Crd(Mapping::random(&mut Rng(3), "m".into())).text(),
        ),
    ];
    let mut session = Session::new(Options::default(), LowerOptions::default());
    let update = session.update(files.clone());
    let mut held: BTreeMap<(usize, String), Vec<u8>> = BTreeMap::new();
    for d in update.deltas {
        let t = TYPES
            .iter()
            .position(|t| *t == d.type_url)
            .expect("a known type");
        if let Some(p) = d.resource {
            held.insert((t, d.name), p.any.value);
        }
    }
    let (want, want_findings) = from_scratch(&files);
    assert_eq!(held, want);
    assert_eq!(session_findings(&mut session), want_findings);
    assert!(
        want_findings.iter().any(|f| f.3 == "AMB425"),
        "{want_findings:?}"
    );
}
