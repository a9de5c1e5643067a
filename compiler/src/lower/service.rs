//! The `service` field: `name`, `name.namespace`, `name:port`, `http(s)://...`, `[ipv6]:port`.

/// A parsed `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub https: bool,
    /// The host as written (no scheme, no port).
    pub host: String,
    /// The port as written, if any.
    pub port: Option<u16>,
}

impl Upstream {
    /// The port to connect to: as written, else 443 with `https://`, else 80.
    pub fn port_or_default(&self) -> u16 {
        self.port_for(self.https)
    }

    /// The port to connect to when the cluster does (`tls`) or does not originate TLS: as
    /// written, else 443 with TLS, else 80. Emissary's `IRCluster` decides by TLS, not by the
    /// scheme ("If the port is unset, fix it up. port = 443 if originate_tls else 80"), so a
    /// `tls` TLSContext on a service without a port connects to 443, `http://` included.
    pub fn port_for(&self, tls: bool) -> u16 {
        self.port.unwrap_or(if tls { 443 } else { 80 })
    }

    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }

    /// The DNS name to resolve: an unqualified Kubernetes name resolves in `namespace`.
    pub fn dns_name(&self, namespace: &str) -> String {
        if self.is_ip() || self.host.contains('.') || self.host == "localhost" {
            self.host.clone()
        } else {
            format!("{}.{namespace}", self.host)
        }
    }

    /// If the host names a Kubernetes Service, its `(name, namespace)`.
    ///
    /// `name` and `name.namespace` do, as do `name.namespace.svc` and
    /// `name.namespace.svc.cluster.local`; anything else with dots is taken as an external
    /// DNS name unless its second label is a namespace the input knows.
    pub fn kubernetes_service(
        &self,
        namespace: &str,
        known_namespaces: &dyn Fn(&str) -> bool,
    ) -> Option<(String, String)> {
        if self.is_ip() || self.host == "localhost" {
            return None;
        }
        let host = self.host.trim_end_matches('.');
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            [name] => Some((name.to_string(), namespace.to_string())),
            [name, ns] if known_namespaces(ns) => Some((name.to_string(), ns.to_string())),
            [name, ns, "svc"] | [name, ns, "svc", "cluster", "local"] => {
                Some((name.to_string(), ns.to_string()))
            }
            _ => None,
        }
    }
}

/// Parses `service`. The error is a message in the diagnostic style.
pub fn parse(s: &str) -> Result<Upstream, String> {
    let s = s.trim();
    let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!(
            "scheme `{scheme}://` is not supported: use `http://` or `https://`"
        ));
    } else {
        (false, s)
    };
    if rest.is_empty() {
        return Err("the service has no host".into());
    }
    if let Some(i) = rest.find('/') {
        return Err(format!(
            "the service cannot carry a path (`{}`): use `rewrite` or `prefix`",
            &rest[i..]
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err("an IPv6 address is missing its closing `]`".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{p}` after the IPv6 address"))?,
            ),
        };
        (addr.to_string(), port)
    } else if rest.matches(':').count() > 1 {
        return Err(format!(
            "`{rest}` looks like an IPv6 address: write it in brackets, `[{rest}]`"
        ));
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the service has no host".into());
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(format!("`{bad}` cannot appear in a host name"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Some(n as u16),
            Ok(n) => return Err(format!("port {n} is outside 1-65535")),
            Err(_) => return Err(format!("port `{p}` is not a number")),
        },
    };
    Ok(Upstream { https, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            parse("quote").unwrap(),
            Upstream {
                https: false,
                host: "quote".into(),
                port: None
            }
        );
        assert_eq!(parse("quote.ns:8080").unwrap().port, Some(8080));
        let u = parse("https://api.example.com").unwrap();
        assert!(u.https);
        assert_eq!(u.port_or_default(), 443);
        assert_eq!(parse("[::1]:9000").unwrap().host, "::1");
        assert!(!parse("svc:8443").unwrap().https);
    }

    /// Emissary's `IRCluster`: an unset port is 443 when the cluster originates TLS, by
    /// `https://` or by a TLSContext alone, and a written port stays.
    #[test]
    fn default_port_follows_tls() {
        assert_eq!(parse("svc").unwrap().port_for(true), 443);
        assert_eq!(parse("http://svc").unwrap().port_for(true), 443);
        assert_eq!(parse("svc").unwrap().port_for(false), 80);
        assert_eq!(parse("svc:8080").unwrap().port_for(true), 8080);
    }

    #[test]
    fn errors() {
        assert!(parse("svc:70000").unwrap_err().contains("outside"));
        assert!(parse("svc:http").unwrap_err().contains("not a number"));
        assert!(parse("ftp://x").unwrap_err().contains("scheme"));
        assert!(parse("::1:80").unwrap_err().contains("brackets"));
        assert!(parse("svc/path").unwrap_err().contains("path"));
        assert!(parse("svc:0").is_err());
    }

    #[test]
    fn kubernetes_names() {
        let known = |ns: &str| ns == "prod";
        let k = |s: &str| parse(s).unwrap().kubernetes_service("default", &known);
        assert_eq!(k("quote"), Some(("quote".into(), "default".into())));
        assert_eq!(k("quote.prod"), Some(("quote".into(), "prod".into())));
        assert_eq!(
            k("quote.other.svc.cluster.local"),
            Some(("quote".into(), "other".into()))
        );
        assert_eq!(k("httpbin.org"), None);
        assert_eq!(k("10.0.0.1"), None);
    }
}
