//! Reading Ambassador configuration from the cluster the kubeconfig points at.
//!
//! Without `-f`, `lint` and `routes` list Services and every `getambassador.io` kind the
//! API server serves, turn each object into YAML the way `kubectl get -o yaml` would show
//! it (annotations as literal blocks, so positions inside them are readable), and hand
//! each object to the compiler as its own source named `cluster:<namespace>/<Kind>/<name>`.
//! Everything here is one-shot: a small current-thread runtime lives for one `read`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ambassador_compiler::admission::as_written;
use ambassador_compiler::front::Kind;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use serde_json::Value;

use crate::cli::SourceArgs;
use crate::input::{self, Input};

/// Versions of `getambassador.io` tried for each kind, newest first.
const VERSIONS: [&str; 2] = ["v3alpha1", "v2"];

/// How long one request may take before the server counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the cluster could not be read. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `--kubeconfig`, `KUBECONFIG` nor `~/.kube/config` exists, and this is not a pod.
    #[error(
        "no kubeconfig: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config (or read files with -f)"
    )]
    NoKubeconfig,
    /// The kubeconfig named by `--kubeconfig` does not exist.
    #[error("kubeconfig {path} does not exist")]
    KubeconfigMissing { path: PathBuf },
    /// The kubeconfig exists but cannot be read or parsed.
    #[error("kubeconfig {path}: {reason}")]
    KubeconfigUnreadable { path: String, reason: String },
    /// `--context` names a context the kubeconfig does not have.
    #[error("context `{name}` is not in the kubeconfig (contexts: {known})")]
    UnknownContext { name: String, known: String },
    /// No `--context` and no `current-context` in the kubeconfig.
    #[error("the kubeconfig has no current context: pass --context (contexts: {known})")]
    NoCurrentContext { known: String },
    /// The selected context cannot be turned into a client configuration.
    #[error("context `{context}` in {path}: {reason}")]
    BadContext {
        context: String,
        path: String,
        reason: String,
    },
    /// The in-cluster service account configuration cannot be loaded.
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    /// The HTTP client cannot be built (TLS material, proxy settings).
    #[error("building the client for {server}: {reason}")]
    Client { server: String, reason: String },
    /// The async runtime for the client could not start.
    #[error("starting the client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No answer from the API server: connection refused, DNS, TLS, timeout.
    #[error("cannot reach the API server at {server} (listing {what}): {reason}")]
    Unreachable {
        server: String,
        what: String,
        reason: String,
    },
    /// The API server refused the credentials.
    #[error("unauthorized at {server} (listing {what}): {message}")]
    Unauthorized {
        server: String,
        what: String,
        message: String,
    },
    /// The credentials are valid but may not list a kind.
    #[error("forbidden: cannot list {what} {scope}: {message}")]
    Forbidden {
        what: String,
        scope: String,
        message: String,
    },
    /// Any other error status.
    #[error("listing {what} {scope}: the API server answered {code}: {message}")]
    Api {
        what: String,
        scope: String,
        code: u16,
        message: String,
    },
}

/// Which namespaces to read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::All => "in all namespaces".into(),
            Scope::Namespace(ns) => format!("in namespace `{ns}`"),
        }
    }
}

/// Lists Services and `getambassador.io` resources, as YAML sources named after each object.
pub fn read(args: &SourceArgs) -> Result<Input, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(read_async(args))
}

async fn read_async(args: &SourceArgs) -> Result<Input, Error> {
    let mut config = load_config(args).await?;
    config.read_timeout = Some(REQUEST_TIMEOUT);
    let server = config.cluster_url.to_string();
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(
            args.namespace
                .clone()
                .unwrap_or_else(|| config.default_namespace.clone()),
        )
    };
    let client = kube::Client::try_from(config).map_err(|e| Error::Client {
        server: server.clone(),
        reason: chain(&e),
    })?;
    let lister = Lister {
        client,
        server,
        scope,
    };

    // Services first, so that an unreachable server is reported once, then every kind
    // concurrently: each needs one or two round trips.
    let service = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
    let mut objects = lister.list(&service).await?.unwrap_or_default();
    let lists = futures::future::join_all(Kind::ALL.iter().map(|k| lister.list_custom(*k))).await;
    for list in lists {
        objects.extend(list?);
    }

    objects.sort_by(|a, b| a.0.cmp(&b.0));
    let mut input = Input::default();
    for (name, value) in objects {
        input::add(
            &mut input,
            name,
            ambassador_yaml_out::to_string(&value).into_bytes(),
        );
    }
    Ok(input)
}

/// Builds the client configuration the way kubectl chooses it: `--kubeconfig`, else
/// `KUBECONFIG`, else `~/.kube/config`, else the pod's service account.
async fn load_config(args: &SourceArgs) -> Result<kube::Config, Error> {
    let (kubeconfig, path) = match &args.kubeconfig {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.exists() {
                return Err(Error::KubeconfigMissing { path });
            }
            let kc = Kubeconfig::read_from(&path).map_err(|e| unreadable(&path, e))?;
            (kc, path.display().to_string())
        }
        None => match Kubeconfig::from_env() {
            Ok(Some(kc)) => (kc, "$KUBECONFIG".to_string()),
            Err(e) => {
                return Err(Error::KubeconfigUnreadable {
                    path: "$KUBECONFIG".into(),
                    reason: chain(&e),
                })
            }
            Ok(None) => match default_kubeconfig() {
                Some(path) if path.exists() => {
                    let kc = Kubeconfig::read_from(&path).map_err(|e| unreadable(&path, e))?;
                    (kc, path.display().to_string())
                }
                _ if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                    if let Some(name) = &args.context {
                        return Err(Error::UnknownContext {
                            name: name.clone(),
                            known: "none: running in a pod without a kubeconfig".into(),
                        });
                    }
                    return kube::Config::incluster().map_err(|e| Error::InCluster(chain(&e)));
                }
                _ => return Err(Error::NoKubeconfig),
            },
        },
    };

    let known = known_contexts(&kubeconfig);
    match &args.context {
        Some(name) if !kubeconfig.contexts.iter().any(|c| &c.name == name) => {
            return Err(Error::UnknownContext {
                name: name.clone(),
                known,
            })
        }
        None if kubeconfig
            .current_context
            .as_deref()
            .is_none_or(str::is_empty) =>
        {
            return Err(Error::NoCurrentContext { known })
        }
        _ => {}
    }
    let context = args
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| match e {
            KubeconfigError::LoadContext(name) => Error::UnknownContext {
                name,
                known: known.clone(),
            },
            other => Error::BadContext {
                context: context.clone(),
                path: path.clone(),
                reason: chain(&other),
            },
        })
}

fn unreadable(path: &Path, e: KubeconfigError) -> Error {
    Error::KubeconfigUnreadable {
        path: path.display().to_string(),
        reason: chain(&e),
    }
}

/// `~/.kube/config`, as kubectl finds it.
fn default_kubeconfig() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".kube").join("config"))
}

fn known_contexts(kc: &Kubeconfig) -> String {
    if kc.contexts.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = kc
        .contexts
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect();
    names.join(", ")
}

/// An error with its sources, one after the other: kube's errors put the useful part
/// ("Connection refused") at the bottom of the chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

struct Lister {
    client: kube::Client,
    server: String,
    scope: Scope,
}

impl Lister {
    /// The objects of a `getambassador.io` kind, from the newest version the server
    /// serves; nothing when it serves none (the CRD is not installed).
    async fn list_custom(&self, kind: Kind) -> Result<Vec<(String, Value)>, Error> {
        for version in VERSIONS {
            let resource = ApiResource {
                group: "getambassador.io".into(),
                version: version.into(),
                api_version: format!("getambassador.io/{version}"),
                kind: kind.as_str().into(),
                plural: plural(kind),
            };
            if let Some(objects) = self.list(&resource).await? {
                return Ok(objects);
            }
        }
        Ok(Vec::new())
    }

    /// Every object of one resource in scope, as `(source name, cleaned object)`;
    /// `None` when the server does not serve the resource (404).
    async fn list(&self, resource: &ApiResource) -> Result<Option<Vec<(String, Value)>>, Error> {
        let api: Api<DynamicObject> = match &self.scope {
            Scope::All => Api::all_with(self.client.clone(), resource),
            Scope::Namespace(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
        };
        let what = if resource.group.is_empty() {
            resource.plural.clone()
        } else {
            format!(
                "{}.{}/{}",
                resource.plural, resource.group, resource.version
            )
        };
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) => {
                let scope = self.scope.describe();
                let message = status.message.clone();
                return match status.code {
                    404 => Ok(None),
                    401 => Err(Error::Unauthorized {
                        server: self.server.clone(),
                        what,
                        message,
                    }),
                    403 => Err(Error::Forbidden {
                        what,
                        scope,
                        message,
                    }),
                    code => Err(Error::Api {
                        what,
                        scope,
                        code,
                        message,
                    }),
                };
            }
            Err(e) => {
                return Err(Error::Unreachable {
                    server: self.server.clone(),
                    what,
                    reason: chain(&e),
                })
            }
        };
        let objects = list
            .items
            .into_iter()
            .filter_map(|o| {
                let value = clean(resource, serde_json::to_value(&o).ok()?);
                Some((source_name(&value), value))
            })
            .collect();
        Ok(Some(objects))
    }
}

/// The resource name of a kind: `TCPMapping` → `tcpmappings`, as the CRDs declare them.
pub fn plural(kind: Kind) -> String {
    format!("{}s", kind.as_str().to_ascii_lowercase())
}

/// `cluster:<namespace>/<Kind>/<name>`: where the object lives, for diagnostics.
fn source_name(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "cluster:{}/{}/{}",
        meta["namespace"].as_str().unwrap_or("-"),
        object["kind"].as_str().unwrap_or("?"),
        meta["name"].as_str().unwrap_or("?"),
    )
}

/// The object as a user would read it, without `status`: see
/// [`ambassador_compiler::admission::as_written`].
fn clean(resource: &ApiResource, object: Value) -> Value {
    as_written(&resource.api_version, &resource.kind, object, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambassador_compiler::admission::LAST_APPLIED;
    use serde_json::json;

    #[test]
    fn clean_puts_type_first_and_drops_noise() {
        let r = ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&());
        let v = clean(
            &r,
            json!({
                "metadata": {
                    "name": "a", "namespace": "ns", "resourceVersion": "12",
                    "managedFields": [{"manager": "kubectl"}],
                    "annotations": {LAST_APPLIED: "{}"},
                },
                "spec": {"ports": [{"port": 80}]},
                "status": {"loadBalancer": {}},
            }),
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"ns"},"spec":{"ports":[{"port":80}]}}"#
        );
        assert_eq!(source_name(&v), "cluster:ns/Service/a");
    }

    #[test]
    fn plurals_match_the_crds() {
        assert_eq!(plural(Kind::TcpMapping), "tcpmappings");
        assert_eq!(plural(Kind::TlsContext), "tlscontexts");
        assert_eq!(
            plural(Kind::KubernetesEndpointResolver),
            "kubernetesendpointresolvers"
        );
    }

    #[test]
    fn error_chains_keep_the_cause() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::Runtime(inner);
        assert_eq!(chain(&e), "starting the client runtime: refused");
    }
}
