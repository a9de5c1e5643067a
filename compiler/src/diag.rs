//! Diagnostics: stable codes, severities, one-line fixes, and the positions they point at.
//!
//! A diagnostic is data. The plugin renders it like rustc, the webhook in a compact
//! one-object form, and JSON and SARIF are straight serialisations. Every code is documented
//! with an example in `docs/diagnostics.md`; a test keeps the two in step.

use serde::Serialize;

use crate::source::Span;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails a lint run.
    Info,
    /// Probably a mistake; fails with `--failure-threshold warning`.
    Warning,
    /// The configuration is wrong or will not do what it says.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! codes {
    ($( $variant:ident = $code:literal, $slug:literal, $sev:ident, $title:literal, $fix:literal; )*) => {
        /// Every diagnostic code. Codes are stable: a code is never reused for another meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $( $variant, )* }

        impl Code {
            /// All codes, in catalogue order.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The stable code, e.g. `AMB101`.
            pub fn as_str(self) -> &'static str { match self { $( Code::$variant => $code, )* } }
            /// A short kebab-case name, e.g. `unknown-field`.
            pub fn slug(self) -> &'static str { match self { $( Code::$variant => $slug, )* } }
            /// The severity this code is reported with.
            pub fn severity(self) -> Severity { match self { $( Code::$variant => Severity::$sev, )* } }
            /// What the code means, in one line.
            pub fn title(self) -> &'static str { match self { $( Code::$variant => $title, )* } }
            /// How to fix it, in one line.
            pub fn fix(self) -> &'static str { match self { $( Code::$variant => $fix, )* } }
        }
    };
}

codes! {
    // Input and syntax.
    YamlSyntax = "AMB001", "yaml-syntax", Error, "the YAML cannot be parsed", "fix the YAML syntax at the position shown";
    YamlLimit = "AMB002", "yaml-limit", Error, "the YAML exceeds a safety limit (alias expansion, nesting depth or size)", "remove the alias chain or deep nesting; real configuration never needs it";
    NotText = "AMB003", "not-text", Error, "the input is not UTF-8 text", "save the file as UTF-8; binary files cannot hold manifests";
    NotAnObject = "AMB004", "not-an-object", Warning, "a YAML document is not a Kubernetes object (no `apiVersion` or `kind`)", "add `apiVersion` and `kind`, or keep non-manifest YAML out of the linted paths";
    AnnotationNotString = "AMB005", "annotation-not-string", Error, "the `getambassador.io/config` annotation is not a string", "write the annotation as a YAML block string: `getambassador.io/config: |`";
    EmptyAnnotation = "AMB006", "empty-annotation", Warning, "the `getambassador.io/config` annotation holds no configuration", "remove the empty annotation or add the intended Mapping";
    AnnotationIgnored = "AMB007", "annotation-ignored", Warning, "a `getambassador.io/config` annotation on a kind that Ambassador does not read", "move the annotation to a Service";
    // Kinds, versions and fields.
    UnknownApiVersion = "AMB101", "unknown-api-version", Error, "the apiVersion is not one Ambassador understands", "use `getambassador.io/v3alpha1` (or `v2`, `v1`, `ambassador/v1`)";
    UnknownKind = "AMB102", "unknown-kind", Error, "the kind is not an Ambassador kind", "use one of Mapping, TCPMapping, Host, Module, TLSContext, AuthService, RateLimitService, Listener";
    DeprecatedApiVersion = "AMB103", "deprecated-api-version", Warning, "the apiVersion is deprecated", "move to `getambassador.io/v3alpha1`";
    MissingField = "AMB104", "missing-field", Error, "a required field is missing", "add the field named in the message";
    UnknownField = "AMB105", "unknown-field", Error, "a field Ambassador does not know (Emissary v3 drops it silently)", "fix the spelling (see the suggestion) or remove the field";
    UnsupportedField = "AMB106", "unsupported-field", Warning, "a field Ambassador knows but this compiler does not apply", "remove the field, or apply its effect another way";
    WrongType = "AMB107", "wrong-type", Error, "a field has the wrong type", "give the field a value of the type named in the message";
    Yaml11Boolean = "AMB108", "yaml11-boolean", Warning, "a YAML 1.1 boolean (`yes`, `on`, ...) that YAML 1.2 reads as a string", "write `true` or `false`";
    InvalidValue = "AMB109", "invalid-value", Error, "a field's value is outside what it accepts", "use one of the values named in the message";
    MissingName = "AMB110", "missing-name", Error, "an Ambassador object has no name", "add `name:` (annotation) or `metadata.name` (resource)";
    // Paths, regexes and services.
    PrefixWithoutSlash = "AMB201", "prefix-without-slash", Error, "a `prefix` that does not start with `/` never matches a request path", "start the prefix with `/`";
    InvalidRegex = "AMB202", "invalid-regex", Error, "a regex that Envoy's RE2 engine refuses: Envoy would reject the whole route configuration", "rewrite the regex in RE2 syntax (no look-around, backreferences or possessive quantifiers)";
    RegexTooLarge = "AMB203", "regex-too-large", Error, "a regex whose RE2 program exceeds Envoy's default size limit of 100", "simplify the regex (smaller repetition counts, fewer alternatives)";
    RegexDiffers = "AMB204", "regex-differs", Warning, "a regex construct that means something else in RE2 than in most regex engines", "write the construct RE2's way (see the message)";
    InvalidService = "AMB205", "invalid-service", Error, "the `service` is malformed (scheme, host, or port outside 1-65535)", "write `service` as `name`, `name.namespace:port`, `https://name:port` or `[ipv6]:port`";
    HostWildcard = "AMB206", "host-wildcard", Error, "`host` holds a `*` but is matched exactly, so it can never match", "use `hostname` for DNS globs, or set `host_regex: true` with a regex";
    RewriteConflict = "AMB207", "rewrite-conflict", Warning, "both `rewrite` and `regex_rewrite` are set; `regex_rewrite` wins", "remove one of `rewrite` and `regex_rewrite`";
    RedirectConflict = "AMB208", "redirect-conflict", Error, "more than one of `path_redirect`, `prefix_redirect`, `regex_redirect`", "keep exactly one redirect kind";
    RedirectWithoutHostRedirect = "AMB209", "redirect-without-host-redirect", Warning, "redirect fields without `host_redirect: true` are ignored", "set `host_redirect: true` or remove the redirect fields";
    UnsupportedOutlierDetection = "AMB210", "unsupported-outlier-detection", Error, "`outlier_detection` is not supported by Ambassador", "remove `outlier_detection`; use `circuit_breakers` instead";
    RegexCaseIgnored = "AMB212", "regex-case-ignored", Warning, "`case_sensitive: false` on a `prefix_regex` Mapping has no effect: Emissary writes it where Envoy ignores it", "write the regex case-insensitively with `(?i)`, or remove `case_sensitive`";
    RedirectQueryIgnored = "AMB213", "redirect-query-ignored", Warning, "Emissary leaves a `host_redirect` Mapping's query conditions out of its match: the redirect also answers requests without them", "remove the query conditions, or redirect from a Mapping matched some other way";
    LoadBalancerNeedsEndpoints = "AMB211", "load-balancer-needs-endpoints", Warning, "`load_balancer` has no effect with the `kubernetes-service` resolver (one DNS address)", "use a `kubernetes-endpoint` resolver or remove `load_balancer`";
    // Canaries and weights.
    WeightOver100 = "AMB301", "weight-over-100", Error, "a `weight` over 100", "give weights between 0 and 100";
    WeightTotalOver100 = "AMB302", "weight-total-over-100", Error, "the weights of a canary group add up to more than 100: the members listed first take the traffic up to 100, the others get none", "lower the weights so that they add up to 100 at most";
    WeightTotalUnder100 = "AMB303", "weight-total-under-100", Error, "the weights of a canary group add up to less than 100 and no member is unweighted: the rest of the traffic falls through to later routes", "make the weights add up to 100, or leave one member without `weight`";
    CanaryPrecedence = "AMB304", "canary-precedence", Warning, "Mappings with the same match but different `precedence` do not form a canary group: one shadows the other", "give the would-be canary the same `precedence`";
    CanaryMismatch = "AMB305", "canary-mismatch", Error, "members of a canary group disagree on a setting that must be equal across the group", "make the named setting equal on every member of the group";
    ShadowOnly = "AMB306", "shadow-only", Warning, "a group that holds only a `shadow` Mapping produces no route", "add the primary Mapping for this match, or remove the shadow";
    ImplicitSplit = "AMB307", "implicit-split", Warning, "the same route is bound to different services without weights, so traffic is split evenly between them", "set `weight` on the canary, or give one Mapping a different match";
    CanarySettingsDiffer = "AMB309", "canary-settings-differ", Warning, "members of a canary group set a group setting differently; Emissary gives the whole group the value of one member", "set group settings (regex_rewrite, cors, retries, upgrades, headers) the same on every member of the group";
    CanaryRewritesDiffer = "AMB310", "canary-rewrites-differ", Warning, "members of a canary group rewrite the path (or Host) differently, so the same request reaches each backend with a different path", "give every member the same `rewrite` and `host_rewrite`, unless the backends really expect different paths";
    GroupFlagsInherited = "AMB311", "group-flags-inherited", Warning, "a member of a canary group takes the group's `prefix_exact`, `prefix_regex` or `case_sensitive` from another member", "set `prefix_exact`, `prefix_regex` and `case_sensitive` the same on every Mapping of the group";
    TcpSniWithoutTls = "AMB313", "tcp-sni-without-tls", Error, "a TCPMapping with `host` has no TLS to terminate: no Host with TLS whose hostname matches it, and no TLSContext lists it in `hosts`; it is left out, as Emissary leaves it out", "add a TLSContext with the `host` in its `hosts` and a `secret`, or a Host with TLS whose hostname matches, or remove `host` to forward every connection of the port";
    TcpWeightsCumulative = "AMB312", "tcp-weights-cumulative", Warning, "TCPMappings on one port share connections by running totals of their weights, as Emissary emits them, not by the weights as written", "each member's share is its running total over the sum of the running totals: two TCPMappings share evenly when the first has `weight: 100` and the second none";
    ZeroWeight = "AMB308", "zero-weight", Info, "a member of a canary group receives no traffic", "raise its weight, or remove it once the rollout is done";
    // Whole-configuration checks.
    DuplicateName = "AMB401", "duplicate-name", Error, "two objects of the same kind share a name in one namespace; the later replaces the earlier", "rename one of them";
    ShadowedRoute = "AMB402", "shadowed-route", Warning, "a route that can never match because an earlier route always matches first", "raise its `precedence`, or narrow the earlier route";
    ShadowedByRegex = "AMB403", "shadowed-by-regex", Warning, "a regex route ranked before a literal route matches everything the literal route matches", "narrow the regex, or give the literal route a higher `precedence`";
    HostnameMatchesNoHost = "AMB404", "hostname-matches-no-host", Warning, "the Mapping's `hostname` matches no Host, so it is not routed", "fix `hostname`, or add a Host for it";
    NoHostname = "AMB405", "no-hostname", Warning, "a v3alpha1 Mapping with neither `hostname` nor `host` attaches to no Host and is never routed", "add `hostname: \"*\"` or the intended hostname";
    ExcludedByAmbassadorId = "AMB406", "excluded-by-ambassador-id", Info, "the object's `ambassador_id` excludes it from this instance", "add this instance's id to `ambassador_id` if it should apply";
    UndefinedTlsContext = "AMB407", "undefined-tls-context", Error, "the Mapping names a TLSContext that is not defined", "define the TLSContext, or fix its name";
    UndefinedResolver = "AMB408", "undefined-resolver", Error, "the Mapping names a resolver that is not defined", "use `kubernetes-service`, `kubernetes-endpoint`, or define the resolver";
    ServiceNotFound = "AMB409", "service-not-found", Warning, "the upstream Service is not among the given manifests (it may live elsewhere)", "check the service name and namespace, or lint the manifests that define it too";
    DuplicateHostname = "AMB411", "duplicate-hostname", Warning, "two Hosts claim the same hostname; their Mappings are served by one virtual host", "give each Host its own hostname";
    UnsupportedKind = "AMB412", "unsupported-kind", Warning, "a kind that is checked but not compiled into Envoy configuration", "remove the object, or configure its effect another way";
    DuplicateListenerPort = "AMB413", "duplicate-listener-port", Error, "two Listeners take the same port; Emissary keeps the first", "give each Listener its own port";
    NoListener = "AMB414", "no-listener", Info, "no Listener is defined: Emissary 2.0 and later serve no HTTP then, while this compiler listens on 8080 (and 8443 for TLS Hosts)", "define Listeners (for example 8080 and 8443, `protocol: HTTPS`, `securityModel: XFP`, `hostBinding.namespace.from: ALL`)";
    HostNotBound = "AMB415", "host-not-bound", Warning, "no Listener serves the Host, so every request for it fails", "check the Listeners' `hostBinding` (namespace and selector) and `securityModel`";
    ListenerServesNothing = "AMB416", "listener-serves-nothing", Warning, "a Listener that binds no Host is left out", "check its `hostBinding`, or remove it";
    SecretNotFound = "AMB417", "secret-not-found", Info, "the Secret a Host terminates TLS with is not among the manifests (the publisher leaves that Host's TLS out)", "create the Secret (type `kubernetes.io/tls`, with `tls.crt` and `tls.key`), or fix its name and namespace";
    SecretUnusable = "AMB418", "secret-unusable", Error, "the Secret a Host terminates TLS with holds no usable certificate or key, so the Host's TLS is left out", "put a PEM certificate chain in `tls.crt` and its PEM private key in `tls.key`";
    TlsContextMismatch = "AMB419", "tls-context-mismatch", Warning, "a Host and its TLSContext disagree: the context names another Secret (the Host is left out) or its `hosts` omit the Host's hostname", "name the same Secret in both, and list the Host's hostname in the context's `hosts`";
    RedirectLoop = "AMB420", "redirect-loop", Warning, "an INSECURE Listener with TLS in its stack redirects a Host's TLS requests to https too: they can only loop", "use `securityModel: XFP` (or SECURE) on a Listener that terminates TLS, or `insecure.action: Route` on the Host";
    HostsNotServed = "AMB421", "hosts-not-served", Warning, "the Mapping attaches only to Hosts no Listener serves, so no request reaches it", "bind its Hosts to a Listener (`hostBinding`), or attach the Mapping to a served Host";
    CertificateExpired = "AMB422", "certificate-expired", Warning, "the certificate a Host serves has expired", "renew the certificate in the Secret";
    CertificateNameMismatch = "AMB423", "certificate-name-mismatch", Warning, "the certificate a Host serves does not name the Host's hostname", "issue the certificate for the Host's hostname (a subject alternative name), or fix the hostname";
    DuplicateListenerName = "AMB425", "duplicate-listener-name", Error, "two Listeners in different namespaces have the same name, which names the Envoy listener: Envoy refuses two listeners of one name (Emissary sends both, and Envoy rejects every listener)", "give each Listener a name of its own";
    AlpnBlank = "AMB424", "alpn-blank", Warning, "`alpn_protocols` has blanks around a comma: Envoy splits the list at commas only, so the protocol is offered with its blank and no client asks for it", "write the list without blanks, e.g. `alpn_protocols: h2,http/1.1`";
    UnknownModule = "AMB410", "unknown-module", Warning, "a Module whose name is neither `ambassador` nor `tls` has no effect", "name the Module `ambassador`";
    // External authorization (AuthService); AMB52x is kept for rate limiting.
    AuthServiceMissing = "AMB501", "auth-service-missing", Error, "an AuthService without a usable `auth_service`: the routes it protects answer 500 until it is fixed", "set `auth_service` to the authorization service, e.g. `auth-svc.default:3000`";
    AuthProtocolVersion = "AMB502", "auth-protocol-version", Error, "a gRPC AuthService without `protocol_version: v3` (Emissary's default v2 is gone): the routes it protects answer 500 until it is fixed", "add `protocol_version: v3` and serve `envoy.service.auth.v3.Authorization`";
    AuthInvalid = "AMB503", "auth-invalid", Error, "an AuthService setting that cannot be compiled: the routes it protects answer 500 until it is fixed", "fix the setting named in the message";
    AuthSettingsConflict = "AMB504", "auth-settings-conflict", Warning, "several AuthServices set the same setting differently; they merge into one filter, which takes one of the values", "set the setting the same on every AuthService, or keep one AuthService";
    AuthClusterConflict = "AMB505", "auth-cluster-conflict", Error, "several AuthServices disagree on how to reach the service (`proto`, `tls`, `auth_service`): Emissary refuses the merge, and the routes they protect answer 500 until it is fixed", "give every AuthService the same `proto`, `tls` and `auth_service`, or keep one AuthService";
    // Rate limiting (RateLimitService, Mapping `labels`).
    RateLimitServiceMissing = "AMB521", "ratelimit-service-missing", Error, "a RateLimitService without a usable `service`: no request is rate limited until it is fixed", "set `service` to the rate limit service, e.g. `ratelimit.default:8081`";
    RateLimitProtocolVersion = "AMB522", "ratelimit-protocol-version", Error, "a RateLimitService without `protocol_version: v3` (Emissary's default v2 is gone): no request is rate limited until it is fixed", "add `protocol_version: v3` and serve `envoy.service.ratelimit.v3.RateLimitService`";
    SeveralRateLimitServices = "AMB523", "several-ratelimit-services", Error, "more than one RateLimitService: Emissary supports one and then uses none, so no request is rate limited", "keep one RateLimitService";
    InvalidRateLimitLabel = "AMB524", "invalid-rate-limit-label", Error, "a rate limit label that is none of the forms Emissary reads: it is left out of the route's rate limits", "write labels as `{<domain>: [{<group>: [source_cluster | destination_cluster | remote_address | <string> | {generic_key: {value}} | {request_headers: {key, header_name}}]}]}`";
    RateLimitInvalid = "AMB525", "ratelimit-invalid", Error, "a RateLimitService setting that cannot be compiled: no request is rate limited until it is fixed", "fix the setting named in the message";
    BypassAuthDiffers = "AMB506", "bypass-auth-differs", Error, "members of a canary group disagree on `bypass_auth`, so the member that differs cannot join the group", "set `bypass_auth` the same on every Mapping of the group";
    // Access logs (LogService).
    LogServiceMissing = "AMB541", "logservice-missing", Error, "a LogService without a usable `service`: no access log is sent until it is fixed", "set `service` to the access log service, e.g. `als.default:9001`";
    LogServiceProtocolVersion = "AMB542", "logservice-protocol-version", Error, "a LogService without `protocol_version: v3` (Emissary's default v2 is gone): no access log is sent until it is fixed", "add `protocol_version: v3` and serve `envoy.service.accesslog.v3.AccessLogService`";
    SeveralLogServices = "AMB543", "several-logservices", Error, "more than one LogService: as in Emissary only one is used (here the first by namespace and name) and the others send nothing", "keep one LogService";
    LogServiceDriver = "AMB544", "logservice-driver", Error, "a LogService whose `driver` is neither `http` nor `tcp`: no access log is sent until it is fixed", "set `driver: http` (one entry per request, with headers) or `driver: tcp` (connection entries)";
    InvalidLogHeader = "AMB545", "invalid-log-header", Error, "an entry of `driver_config.additional_log_headers` that cannot be used (not a mapping, no `header_name`, or under the `tcp` driver): it is left out", "write `{header_name: x-request-id, during_request: true, during_response: true, during_trailer: true}` under a LogService with `driver: http`";
    LogServiceInvalid = "AMB546", "logservice-invalid", Error, "a LogService setting that cannot be compiled: no access log is sent until it is fixed", "fix the setting named in the message";
    LogServiceNotGrpc = "AMB547", "logservice-not-grpc", Warning, "a LogService without `grpc: true`: Emissary then reaches the service over HTTP/1.1, where gRPC does not work; this compiler uses HTTP/2 anyway", "add `grpc: true`";
    // Tracing (TracingService).
    TracingServiceMissing = "AMB561", "tracing-service-missing", Error, "a TracingService without a usable `service`: no span is sent until it is fixed", "set `service` to the collector, e.g. `zipkin.default:9411`";
    TracingDriver = "AMB562", "tracing-driver", Error, "a TracingService whose `driver` is not `zipkin`, `datadog` or `opentelemetry` (`lightstep` was removed in Emissary 3.4): no span is sent until it is fixed", "set `driver` to `zipkin`, `datadog` or `opentelemetry`";
    SeveralTracingServices = "AMB563", "several-tracing-services", Error, "more than one TracingService: Emissary supports one and then uses none, so no request is traced", "keep one TracingService";
    TracingInvalid = "AMB564", "tracing-invalid", Error, "a TracingService setting that cannot be compiled: no span is sent until it is fixed", "fix the setting named in the message";
    InvalidCustomTag = "AMB565", "invalid-custom-tag", Error, "an entry of `custom_tags` or `tag_headers` that cannot be used: it is left out", "write `{tag: name, literal: {value: v}}`, `{tag: name, environment: {name: VAR}}` or `{tag: name, request_header: {name: x-header}}`";
}

impl Code {
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s || c.slug() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Kubernetes-style identity of the object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
pub struct ObjectRef {
    // Inline up to 24 bytes: every resource has one, and Kubernetes names are mostly short.
    pub kind: crate::ir::Name,
    pub namespace: crate::ir::Name,
    pub name: crate::ir::Name,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A secondary position with a label, e.g. the earlier route that shadows this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    pub span: Span,
    pub message: String,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// Lowercase, no trailing period, names things in backticks.
    pub message: String,
    /// The primary position: the offending key or value.
    pub span: Option<Span>,
    /// The object the finding is about, when it is known.
    pub object: Option<ObjectRef>,
    /// The field path inside the object, e.g. `prefix` or `spec.prefix`.
    pub field: Option<String>,
    /// A specific suggestion (e.g. "did you mean `timeout_ms`?"); the code's fix otherwise.
    pub help: Option<String>,
    pub related: Vec<Related>,
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Diagnostic {
    pub fn new(code: Code, span: Option<Span>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span,
            object: None,
            field: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn at(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, Some(span), message)
    }

    pub fn with_object(mut self, object: &ObjectRef) -> Diagnostic {
        self.object = Some(object.clone());
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Diagnostic {
        self.field = Some(field.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.related.push(Related {
            span,
            message: message.into(),
        });
        self
    }

    /// The fix to show: the specific suggestion if there is one, else the code's general fix.
    pub fn fix(&self) -> &str {
        self.help.as_deref().unwrap_or(self.code.fix())
    }
}

/// Sort diagnostics by file, position and code, so output is stable whatever order passes ran in.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        let ka = a.span.map(|s| (s.file, s.start));
        let kb = b.span.map(|s| (s.file, s.start));
        ka.cmp(&kb)
            .then(a.code.cmp(&b.code))
            .then(a.message.cmp(&b.message))
    });
}

/// The "did you mean" suggestion: the closest candidate within a small edit distance.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    let lw = word.to_ascii_lowercase().replace('-', "_");
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lw, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein with adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
            assert!(seen.insert(c.slug()), "duplicate slug {}", c.slug());
            assert_eq!(Code::parse(c.as_str()), Some(*c));
        }
    }

    #[test]
    fn suggestions() {
        let fields = ["timeout_ms", "idle_timeout_ms", "prefix", "service"];
        assert_eq!(did_you_mean("timout_ms", fields), Some("timeout_ms"));
        assert_eq!(did_you_mean("prefx", fields), Some("prefix"));
        assert_eq!(did_you_mean("servcie", fields), Some("service"));
        assert_eq!(did_you_mean("zzzzzz", fields), None);
    }
}
