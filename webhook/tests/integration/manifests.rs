//! The install manifests, file by file and as `kubectl kustomize` renders them,
//! parsed into k8s-openapi types with the settings that matter asserted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize as _;
use serde_json::Value;

use crate::support::TempDir;

const NAMESPACE: &str = "ambassador-system";
const PLURALS: [&str; 10] = [
    "mappings",
    "tcpmappings",
    "hosts",
    "modules",
    "tlscontexts",
    "authservices",
    "ratelimitservices",
    "logservices",
    "tracingservices",
    "listeners",
];

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

/// Every YAML document in `text`, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(doc: &Value) -> T {
    serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {} does not parse as {}: {e}",
            doc["kind"],
            doc["metadata"]["name"],
            std::any::type_name::<T>()
        )
    })
}

/// Parses one document into the k8s-openapi type its kind names; cert-manager
/// kinds (no k8s-openapi type) are checked for their apiVersion.
fn check_parses(doc: &Value) {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => drop(typed::<Namespace>(doc)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
        "ClusterRole" => drop(typed::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
        "Role" => drop(typed::<Role>(doc)),
        "RoleBinding" => drop(typed::<RoleBinding>(doc)),
        "Deployment" => drop(typed::<Deployment>(doc)),
        "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(doc)),
        "Service" => drop(typed::<Service>(doc)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc)),
        "Secret" => drop(typed::<Secret>(&unwrap_base64(doc))),
        "ValidatingWebhookConfiguration" => {
            drop(typed::<ValidatingWebhookConfiguration>(&unwrap_base64(doc)))
        }
        "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(doc)),
        "Issuer" | "Certificate" => assert_eq!(doc["apiVersion"], "cert-manager.io/v1"),
        other => panic!("unexpected kind {other:?} in manifests"),
    }
}

/// kustomize writes base64 wrapped over several lines, which the API server
/// accepts but k8s-openapi's `ByteString` does not; join the lines first.
fn unwrap_base64(doc: &Value) -> Value {
    let mut doc = doc.clone();
    // Secret `data` is base64; a ConfigMap's `data` is text and keeps its whitespace.
    let is_secret = doc["kind"] == "Secret";
    if let Some(data) = doc
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .filter(|_| is_secret)
    {
        for value in data.values_mut() {
            if let Some(text) = value.as_str() {
                *value = Value::String(text.split_whitespace().collect());
            }
        }
    }
    if let Some(hooks) = doc["webhooks"].as_array_mut() {
        for hook in hooks {
            if let Some(ca) = hook["clientConfig"]["caBundle"].as_str() {
                let joined: String = ca.split_whitespace().collect();
                hook["clientConfig"]["caBundle"] = Value::String(joined);
            }
        }
    }
    doc
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_manifest_file_parses_into_its_kubernetes_type() {
    let mut files = Vec::new();
    yaml_files(&manifests_dir(), &mut files);
    let mut kinds = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let docs = documents(&text);
        assert!(!docs.is_empty(), "{} is empty", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        // The Envoy bootstrap is Envoy's format, owned and tested by the ADS side.
        if file.ends_with("envoy/bootstrap.yaml") {
            continue;
        }
        if name == "kustomization.yaml" {
            for doc in &docs {
                let kind = doc["kind"].as_str().unwrap();
                assert!(
                    kind == "Kustomization" || kind == "Component",
                    "{}",
                    file.display()
                );
            }
            continue;
        }
        for doc in &docs {
            check_parses(doc);
            kinds.insert(doc["kind"].as_str().unwrap().to_owned());
            // Every namespaced object of ours lives in the control plane's namespace.
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                assert_eq!(ns, NAMESPACE, "{}", file.display());
            }
        }
    }
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ValidatingWebhookConfiguration",
        "CustomResourceDefinition",
        "Issuer",
        "Certificate",
    ] {
        assert!(kinds.contains(kind), "no {kind} in manifests/");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of manifests/ to render. The Envoy bootstrap is written by the ADS
/// side; until it lands in this branch, the copy gets a minimal stand-in so the
/// rest of the tree can still be rendered and checked.
fn manifests_copy() -> TempDir {
    let tmp = TempDir::new("manifests");
    copy_dir(&manifests_dir(), tmp.path());
    let bootstrap = tmp.path().join("envoy/bootstrap.yaml");
    if !bootstrap.exists() {
        eprintln!(
            "note: manifests/envoy/bootstrap.yaml is missing; rendering with a test stand-in"
        );
        std::fs::write(&bootstrap, "node:\n  id: stand-in\n  cluster: ambassador\n").unwrap();
    }
    tmp
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect(
            "kubectl must be installed to render manifests/ (it needs no cluster for `kustomize`)",
        );
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    docs.iter().for_each(check_parses);
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in rendered manifests"))
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().unwrap()
}

/// The hardening every container of ours must have.
fn assert_hardened(name: &str, pod: &PodSpec, container: &Container) {
    let psc = pod
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{name}");
    assert!(psc.run_as_user.is_some_and(|uid| uid > 0), "{name}");
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault",
        "{name}"
    );
    let sc = container.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
    assert_ne!(sc.privileged, Some(true), "{name}");
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(
        caps.drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "{name}"
    );
    assert!(caps.add.as_ref().is_none_or(Vec::is_empty), "{name}");
    let resources = container.resources.as_ref().unwrap();
    for map in [
        resources.requests.as_ref().unwrap(),
        resources.limits.as_ref().unwrap(),
    ] {
        assert!(
            map.contains_key("cpu") && map.contains_key("memory"),
            "{name}: {map:?}"
        );
    }
}

fn named_port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no port {name}"))
        .container_port
}

#[test]
fn the_default_install_renders_with_the_required_settings() {
    let tmp = manifests_copy();
    let docs = kustomize(tmp.path());

    // Namespace and namespaced objects.
    let _: Namespace = typed(find(&docs, "Namespace", NAMESPACE));
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap();
        let cluster_scoped = [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration",
            "CustomResourceDefinition",
        ];
        if !cluster_scoped.contains(&kind) {
            assert_eq!(
                doc["metadata"]["namespace"], NAMESPACE,
                "{kind} {}",
                doc["metadata"]["name"]
            );
        }
    }

    // The webhook Deployment.
    let deployment: Deployment = typed(find(&docs, "Deployment", "ambassador-webhook"));
    let spec = &deployment.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = pod_spec(&deployment);
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("ambassador-webhook")
    );
    let container = &pod.containers[0];
    assert_hardened("webhook", pod, container);
    let port = named_port(container, "webhook");
    let args = container.args.as_ref().unwrap();
    assert_eq!(args[0], "serve");
    assert!(
        args.contains(&format!("--listen=0.0.0.0:{port}")),
        "{args:?}"
    );
    for (probe, path) in [
        (container.liveness_probe.as_ref().unwrap(), "/healthz"),
        (container.readiness_probe.as_ref().unwrap(), "/readyz"),
    ] {
        let get = probe.http_get.as_ref().unwrap();
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("webhook".into()));
    }
    // The certificate directory is the whole Secret volume (no subPath, which
    // would freeze the files and defeat reloading).
    let tls_dir = args
        .iter()
        .find_map(|a| a.strip_prefix("--tls-dir="))
        .expect("--tls-dir");
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == tls_dir)
        .expect("tls dir is mounted");
    assert!(mount.sub_path.is_none() && mount.read_only == Some(true));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    let secret_name = volume.secret.as_ref().unwrap().secret_name.clone().unwrap();
    assert_eq!(secret_name, "ambassador-webhook-tls");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();

    // The PodDisruptionBudget keeps one webhook pod up through voluntary disruptions.
    let pdb: PodDisruptionBudget = typed(find(&docs, "PodDisruptionBudget", "ambassador-webhook"));
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(1)));
    let selector = pdb_spec.selector.unwrap().match_labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));

    // The Service the API server calls.
    let service: Service = typed(find(&docs, "Service", "ambassador-webhook"));
    let service_spec = service.spec.unwrap();
    let selector = service_spec.selector.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let https = service_spec
        .ports
        .unwrap()
        .into_iter()
        .find(|p| p.port == 443)
        .unwrap();
    assert_eq!(
        https.target_port,
        Some(IntOrString::String("webhook".into()))
    );

    // The ValidatingWebhookConfiguration.
    let vwc: ValidatingWebhookConfiguration = typed(find(
        &docs,
        "ValidatingWebhookConfiguration",
        "ambassador-webhook",
    ));
    let certificate = find(&docs, "Certificate", "ambassador-webhook");
    assert_eq!(
        vwc.metadata.annotations.as_ref().unwrap()["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/ambassador-webhook")
    );
    assert_eq!(certificate["spec"]["secretName"], secret_name);
    let dns: Vec<&str> = certificate["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        dns.contains(&"ambassador-webhook.ambassador-system.svc"),
        "{dns:?}"
    );
    let issuer = certificate["spec"]["issuerRef"]["name"].as_str().unwrap();
    let _ = find(&docs, "Issuer", issuer);

    let hooks = vwc.webhooks.unwrap();
    assert_eq!(hooks.len(), 2);
    let mut covered = BTreeSet::new();
    for hook in &hooks {
        assert_eq!(
            hook.admission_review_versions,
            vec!["v1".to_owned()],
            "{}",
            hook.name
        );
        assert_eq!(hook.side_effects, "None");
        assert!(
            hook.timeout_seconds.is_some_and(|t| (1..=5).contains(&t)),
            "{}",
            hook.name
        );
        assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
        let svc = hook.client_config.service.as_ref().unwrap();
        assert_eq!(svc.name, "ambassador-webhook");
        assert_eq!(svc.namespace, NAMESPACE);
        assert_eq!(svc.path.as_deref(), Some("/validate"));
        assert_eq!(svc.port, Some(443));
        let expressions = hook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        let skip = expressions
            .iter()
            .find(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn")
            .unwrap();
        let skipped = skip.values.as_ref().unwrap();
        assert!(
            skipped.contains(&"kube-system".to_owned()) && skipped.contains(&NAMESPACE.to_owned())
        );
        for rule in hook.rules.as_ref().unwrap() {
            assert_eq!(
                rule.operations.as_deref(),
                Some(&["CREATE".to_owned(), "UPDATE".to_owned()][..])
            );
            for resource in rule.resources.as_ref().unwrap() {
                assert!(
                    !resource.contains('/'),
                    "subresource {resource} is reviewed"
                );
                covered.insert((
                    rule.api_groups.as_ref().unwrap()[0].clone(),
                    resource.clone(),
                ));
            }
        }
    }
    let services_hook = hooks
        .iter()
        .find(|h| h.name.starts_with("services."))
        .unwrap();
    let conditions = services_hook.match_conditions.as_ref().unwrap();
    assert!(conditions.iter().any(|c| c
        .expression
        .contains("'getambassador.io/config' in object.metadata.annotations")
        && c.expression.contains("has(object.metadata.annotations)")));
    let mut expected: BTreeSet<(String, String)> = PLURALS
        .iter()
        .map(|p| ("getambassador.io".to_owned(), p.to_string()))
        .collect();
    expected.insert((String::new(), "services".to_owned()));
    assert_eq!(covered, expected);

    // CRDs: every kind, both versions, one storage version, a status subresource.
    let crds: Vec<CustomResourceDefinition> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(typed)
        .collect();
    let plurals: BTreeSet<&str> = crds.iter().map(|c| c.spec.names.plural.as_str()).collect();
    assert_eq!(plurals, PLURALS.into_iter().collect());
    for crd in &crds {
        assert_eq!(crd.spec.group, "getambassador.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        let versions: Vec<&str> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(versions, ["v2", "v3alpha1"], "{}", crd.spec.names.kind);
        assert_eq!(crd.spec.versions.iter().filter(|v| v.storage).count(), 1);
        for version in &crd.spec.versions {
            assert!(version.served);
            assert!(
                version.subresources.as_ref().unwrap().status.is_some(),
                "{} {}",
                crd.spec.names.kind,
                version.name
            );
            let schema = version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap();
            let spec = &schema.properties.as_ref().unwrap()["spec"];
            assert_eq!(spec.x_kubernetes_preserve_unknown_fields, Some(true));
        }
    }

    // RBAC: read what is compiled, write only status and events, nothing else.
    let role: ClusterRole = typed(find(&docs, "ClusterRole", "ambassador-webhook"));
    let read = ["get", "list", "watch"];
    let mut secrets_read = false;
    for rule in role.rules.unwrap() {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(rule.non_resource_urls.is_none() && rule.resource_names.is_none());
        for verb in &rule.verbs {
            assert_ne!(verb, "*");
        }
        for resource in &resources {
            assert_ne!(resource, "*");
            if resource == "secrets" {
                // TLS certificates for SDS: read in a rule of their own, core group only,
                // exactly get/list/watch (the field selector narrows what is read; RBAC
                // cannot).
                assert_eq!(groups, [""], "Secrets in a rule of their own");
                assert_eq!(resources, ["secrets"], "Secrets in a rule of their own");
                assert_eq!(rule.verbs, read, "Secrets are only read");
                secrets_read = true;
            }
            let allowed: &[&str] = if resource.ends_with("/status") {
                assert_eq!(groups, ["getambassador.io"]);
                &["get", "patch", "update"]
            } else if resource == "events" {
                &["create", "patch"]
            } else {
                &read
            };
            for verb in &rule.verbs {
                assert!(
                    allowed.contains(&verb.as_str()),
                    "{verb} on {resource} is more than needed"
                );
            }
        }
    }
    assert!(
        secrets_read,
        "the publisher reads the TLS Secrets Hosts name (SDS)"
    );
    let binding: ClusterRoleBinding =
        typed(find(&docs, "ClusterRoleBinding", "ambassador-webhook"));
    assert_eq!(binding.role_ref.name, "ambassador-webhook");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", "ambassador-webhook", Some(NAMESPACE))
    );
    let _: ServiceAccount = typed(find(&docs, "ServiceAccount", "ambassador-webhook"));

    // Leader election: in its own namespace, create a Lease, and read and renew only the
    // one named `ambassador-webhook`; nothing else.
    let role: Role = typed(find(&docs, "Role", "ambassador-webhook-lease"));
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    let mut granted = Vec::new();
    for rule in role.rules.unwrap() {
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["coordination.k8s.io".to_string()][..])
        );
        assert_eq!(rule.resources.as_deref(), Some(&["leases".to_string()][..]));
        for verb in rule.verbs {
            granted.push((verb, rule.resource_names.clone()));
        }
    }
    granted.sort();
    let named = Some(vec!["ambassador-webhook".to_string()]);
    assert_eq!(
        granted,
        [
            ("create".to_string(), None),
            ("get".to_string(), named.clone()),
            ("update".to_string(), named),
        ]
    );
    let binding: RoleBinding = typed(find(&docs, "RoleBinding", "ambassador-webhook-lease"));
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "ambassador-webhook-lease");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("ambassador-webhook", Some(NAMESPACE))
    );
    // The holder identity and the Lease's namespace come from the pod.
    let env = container.env.as_ref().unwrap();
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        let from = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
        assert_eq!(from.map(|f| f.field_path.as_str()), Some(field), "{name}");
    }

    // Envoy reads its bootstrap from the generated ConfigMap.
    let envoy: Deployment = typed(find(&docs, "Deployment", "ambassador-envoy"));
    let pod = pod_spec(&envoy);
    let container = &pod.containers[0];
    assert_hardened("envoy", pod, container);
    let args = container.args.as_ref().unwrap();
    let config_path = &args[args.iter().position(|a| a == "--config-path").unwrap() + 1];
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| config_path.starts_with(&format!("{}/", m.mount_path)))
        .expect("bootstrap is mounted");
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap();
    let config_map_name = volume.config_map.as_ref().unwrap().name.clone();
    assert!(
        config_map_name.starts_with("ambassador-envoy-bootstrap-"),
        "hash suffix: {config_map_name}"
    );
    let config_map: ConfigMap = typed(find(&docs, "ConfigMap", &config_map_name));
    let file = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(config_map.data.unwrap().contains_key(file));
    let _: Service = typed(find(&docs, "Service", "ambassador-envoy"));
}

#[test]
fn the_self_signed_overlay_injects_the_generated_ca() {
    let tmp = manifests_copy();
    let generated = ambassador_webhook::certs::generate(&ambassador_webhook::certs::Request {
        names: vec!["ambassador-webhook.ambassador-system.svc".into()],
        valid_days: 30,
    })
    .unwrap();
    generated
        .write_to(&tmp.path().join("self-signed/certs"))
        .unwrap();
    let docs = kustomize(&tmp.path().join("self-signed"));

    assert!(
        !docs.iter().any(|d| d["apiVersion"] == "cert-manager.io/v1"),
        "no cert-manager objects without cert-manager"
    );
    let secret: Secret = typed(&unwrap_base64(find(
        &docs,
        "Secret",
        "ambassador-webhook-tls",
    )));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    assert_eq!(data["tls.crt"].0, generated.cert_pem.as_bytes());
    assert_eq!(data["tls.key"].0, generated.key_pem.as_bytes());

    let vwc: ValidatingWebhookConfiguration = typed(&unwrap_base64(find(
        &docs,
        "ValidatingWebhookConfiguration",
        "ambassador-webhook",
    )));
    let hooks = vwc.webhooks.unwrap();
    assert_eq!(hooks.len(), 2);
    for hook in hooks {
        let ca = hook
            .client_config
            .ca_bundle
            .unwrap_or_else(|| panic!("{} has no caBundle", hook.name));
        assert_eq!(ca.0, generated.ca_cert_pem.as_bytes(), "{}", hook.name);
    }
}
