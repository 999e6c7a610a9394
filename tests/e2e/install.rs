//! Installing gpuscope the GitOps way: `config/` renders with kustomize and passes a server-side dry run on the
//! real API server; every workload is probed, hardened and bounded; each component's RBAC allows what the program
//! needs and nothing else; the Dockerfiles build and ship exactly the binaries, user and ports the manifests use.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use gpuscope_crds::policy::{EffectivePolicy, GpuHealthPolicy};
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::{ControlPlane, Identity, run_ok, workspace_binary};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The images the manifests run, as built by the Dockerfiles.
const OPERATOR_IMAGE: &str = "ghcr.io/gpuscope/gpuscope-operator";
const PROBE_IMAGE: &str = "ghcr.io/gpuscope/gpuscope-probe";
/// The operator's remediation taint (operator/src/remediation.rs); the probe must tolerate it.
const OPERATOR_TAINT_KEY: &str = "gpuscope.dev/gpu-unhealthy";
/// The annotation that justifies a workload not running as non-root.
const SECURITY_EXCEPTION: &str = "gpuscope.dev/security-exception";

// ---------------------------------------------------------------------------------------------------------------
// Rendering

fn config(dir: &str) -> PathBuf {
    workspace_root().join("config").join(dir)
}

/// `kubectl kustomize <dir>` (kustomize is built into kubectl; no cluster involved).
fn kustomize(dir: &Path) -> Result<String, String> {
    run_ok(Command::new("kubectl").arg("kustomize").arg(dir))
}

/// Every document of a YAML stream, as JSON values.
fn parse_stream(yaml: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| format!("rendered YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// `config/default` rendered once per test process (the files do not change under a run).
fn rendered_default() -> Result<&'static (String, Vec<Value>), String> {
    static RENDERED: OnceLock<Result<(String, Vec<Value>), String>> = OnceLock::new();
    RENDERED
        .get_or_init(|| {
            let text = kustomize(&config("default"))?;
            let docs = parse_stream(&text)?;
            Ok((text, docs))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `config/default` plus kustomize components (paths under `config/`), through a throwaway overlay. Kustomize
/// refuses absolute paths, so the overlay names them relative to its own directory.
fn render_with_components(components: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let here = std::fs::canonicalize(dir.path())?;
    let root = std::fs::canonicalize(workspace_root())?;
    let up = "../".repeat(here.components().count().saturating_sub(1));
    let rel = |p: &str| {
        let target = root.join("config").join(p);
        format!("{up}{}", target.strip_prefix("/").unwrap_or(&target).display())
    };
    let mut k = format!("resources:\n  - {}\ncomponents:\n", rel("default"));
    for c in components {
        k.push_str(&format!("  - {}\n", rel(c)));
    }
    std::fs::write(here.join("kustomization.yaml"), k)?;
    Ok(kustomize(&here)?)
}

fn kind_of(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name_of(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, String> {
    docs.iter()
        .find(|d| kind_of(d) == kind && name_of(d) == name)
        .ok_or_else(|| format!("no {kind} {name} in the rendered config"))
}

fn workloads(docs: &[Value]) -> Vec<&Value> {
    docs.iter().filter(|d| matches!(kind_of(d), "Deployment" | "DaemonSet")).collect()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn containers(workload: &Value) -> Vec<&Value> {
    let spec = pod_spec(workload);
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// The value of `--flag=value` among a container's args.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

/// An environment variable's downward-API field path.
fn env_field_path<'a>(container: &'a Value, var: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["valueFrom"]["fieldRef"]["fieldPath"].as_str())
}

/// A Kubernetes quantity in base units (bytes, cores): enough of the grammar for these manifests.
fn quantity(q: &Value) -> Option<f64> {
    let s = q.as_str().map(str::to_string).or_else(|| q.as_f64().map(|f| f.to_string()))?;
    let units = [("Ki", 1024f64), ("Mi", 1024f64.powi(2)), ("Gi", 1024f64.powi(3)), ("m", 0.001)];
    for (suffix, factor) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    s.parse().ok()
}

const MIB: f64 = 1024.0 * 1024.0;

/// Whether a health probe's `port` names or numbers one of the container's ports.
fn probe_port_ok(container: &Value, port: &Value) -> bool {
    container["ports"].as_array().is_some_and(|ports| {
        ports
            .iter()
            .any(|p| (port.is_string() && p["name"] == *port) || (port.is_number() && p["containerPort"] == *port))
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The rendered install

#[test]
fn default_install_renders_every_piece_into_one_namespace() -> TestResult {
    let (_, docs) = rendered_default()?;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for d in docs {
        *kinds.entry(kind_of(d)).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = [
        ("Namespace", 1),
        ("CustomResourceDefinition", 2),
        ("ServiceAccount", 3),
        ("ClusterRole", 3),
        ("ClusterRoleBinding", 3),
        ("Role", 4),
        ("RoleBinding", 4),
        ("Deployment", 2),
        ("DaemonSet", 1),
        ("PodDisruptionBudget", 1),
        ("Service", 2),
        ("NetworkPolicy", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, expected, "kinds in config/default");

    for (kind, name) in [
        ("Namespace", INSTALL_NAMESPACE),
        ("CustomResourceDefinition", "gpunodestatuses.gpuscope.dev"),
        ("CustomResourceDefinition", "gpuhealthpolicies.gpuscope.dev"),
        ("ServiceAccount", "gpuscope-probe"),
        ("ServiceAccount", "gpuscope-operator"),
        ("ServiceAccount", "gpuscope-mcp"),
        ("DaemonSet", "gpuscope-probe"),
        ("Deployment", "gpuscope-operator"),
        ("Deployment", "gpuscope-mcp"),
        ("Service", "gpuscope-mcp"),
        ("NetworkPolicy", "gpuscope-mcp"),
    ] {
        find(docs, kind, name)?;
    }

    // One install namespace. The exception is deliberate: Events about cluster-scoped objects go to `default`
    // (`kube-system` before 1.22), so the operator's Event Roles live there.
    let mut elsewhere = BTreeSet::new();
    for d in docs {
        if let Some(ns) = d["metadata"]["namespace"].as_str()
            && ns != INSTALL_NAMESPACE
        {
            elsewhere.insert(format!("{}/{}/{}", kind_of(d), ns, name_of(d)));
        }
    }
    let expected_elsewhere: BTreeSet<String> = [
        "Role/default/gpuscope-operator-events",
        "RoleBinding/default/gpuscope-operator-events",
        "Role/kube-system/gpuscope-operator-events",
        "RoleBinding/kube-system/gpuscope-operator-events",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(elsewhere, expected_elsewhere, "objects outside {INSTALL_NAMESPACE}");
    for kind in ["ServiceAccount", "Deployment", "DaemonSet", "Service", "NetworkPolicy", "PodDisruptionBudget"] {
        for d in docs.iter().filter(|d| kind_of(d) == kind) {
            assert_eq!(d["metadata"]["namespace"], INSTALL_NAMESPACE, "{kind} {} has no namespace", name_of(d));
        }
    }

    // Common labels on every object and pod template, never in the (immutable) selectors.
    for d in docs {
        assert_eq!(d["metadata"]["labels"]["app.kubernetes.io/part-of"], "gpuscope", "{} {}", kind_of(d), name_of(d));
    }
    for w in workloads(docs) {
        assert_eq!(w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"], "gpuscope");
        let selector = w["spec"]["selector"]["matchLabels"].as_object().ok_or("workload without matchLabels")?;
        assert_eq!(selector.keys().collect::<Vec<_>>(), ["app.kubernetes.io/name"], "{} selector", name_of(w));
        for (k, v) in selector {
            assert_eq!(&w["spec"]["template"]["metadata"]["labels"][k], v, "{} selects its own pods", name_of(w));
        }
    }

    // Images are pinned to a release, never `latest`.
    for w in workloads(docs) {
        for c in containers(w) {
            let image = c["image"].as_str().ok_or("container without image")?;
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
            assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{image} is not pinned");
            assert!(image.starts_with(OPERATOR_IMAGE) || image.starts_with(PROBE_IMAGE), "unexpected image {image}");
        }
    }
    Ok(())
}

#[test]
fn crd_kustomization_lists_exactly_the_generated_crds() -> TestResult {
    // A new CRD added to the generator must also be installed.
    let generated: BTreeSet<String> =
        gpuscope_crds::crd_yaml::render_all()?.into_iter().map(|(file, _)| file).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(config("crd"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert_eq!(on_disk, generated, "config/crd holds only generated YAML (its kustomization is `Kustomization`)");
    let k: Value = serde_saphyr::from_str(&std::fs::read_to_string(config("crd").join("Kustomization"))?)?;
    let listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    assert_eq!(listed, generated);
    let rendered = parse_stream(&kustomize(&config("crd"))?)?;
    let names: BTreeSet<&str> = rendered.iter().map(name_of).collect();
    assert_eq!(names, BTreeSet::from(["gpunodestatuses.gpuscope.dev", "gpuhealthpolicies.gpuscope.dev"]));
    Ok(())
}

#[test]
fn every_workload_is_probed_hardened_and_bounded() -> TestResult {
    let (_, docs) = rendered_default()?;
    let mut runs_as_root = BTreeSet::new();
    for w in workloads(docs) {
        let name = name_of(w);
        let pod = pod_spec(w);
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(pod[host], true, "{name} uses {host}");
        }
        for c in containers(w) {
            let what = format!("{name}/{}", c["name"].as_str().unwrap_or("?"));
            // Liveness and readiness on the endpoints every gpuscope program serves.
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{what} liveness");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what} readiness");
            for probe in ["livenessProbe", "readinessProbe"] {
                let port = &c[probe]["httpGet"]["port"];
                assert!(probe_port_ok(c, port), "{what} {probe} port {port} is not a container port");
            }

            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what} readOnlyRootFilesystem");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what} allowPrivilegeEscalation");
            assert_ne!(sc["privileged"], true, "{what} is privileged");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{what} drops all capabilities");
            let added = strings(&sc["capabilities"]["add"]);
            // Only the probe adds one: CAP_SYSLOG, to open /dev/kmsg under kernel.dmesg_restrict=1.
            let allowed: &[&str] = if name == "gpuscope-probe" { &["SYSLOG"] } else { &[] };
            assert_eq!(added, allowed, "{what} capabilities added");
            let seccomp =
                sc["seccompProfile"]["type"].as_str().or(pod["securityContext"]["seccompProfile"]["type"].as_str());
            assert_eq!(seccomp, Some("RuntimeDefault"), "{what} seccomp");

            // Non-root, as the kubelet would decide it: container settings win over the pod's.
            let non_root = sc["runAsNonRoot"].as_bool().or(pod["securityContext"]["runAsNonRoot"].as_bool());
            let uid = sc["runAsUser"].as_i64().or(pod["securityContext"]["runAsUser"].as_i64());
            if non_root != Some(true) || uid == Some(0) {
                runs_as_root.insert(name.to_string());
            } else {
                assert!(uid.is_some_and(|u| u > 0), "{what}: a numeric non-root runAsUser lets the kubelet verify it");
            }

            // Requests and limits for CPU and memory, limits at or above requests.
            for res in ["cpu", "memory"] {
                let request = quantity(&c["resources"]["requests"][res]).ok_or(format!("{what} requests.{res}"))?;
                let limit = quantity(&c["resources"]["limits"][res]).ok_or(format!("{what} limits.{res}"))?;
                assert!(request > 0.0 && limit >= request, "{what} {res}: request {request}, limit {limit}");
            }
        }
    }
    // Exactly the probe runs as root, and says why where cluster admins and policy tools look.
    assert_eq!(runs_as_root, BTreeSet::from(["gpuscope-probe".to_string()]));
    for name in &runs_as_root {
        let w = find(docs, "DaemonSet", name)?;
        let why = w["metadata"]["annotations"][SECURITY_EXCEPTION].as_str().unwrap_or_default();
        assert!(why.contains("CAP_SYSLOG") && why.contains("hostPath"), "{name} justifies root: {why:?}");
    }
    Ok(())
}

#[test]
fn probe_daemonset_runs_on_gpu_nodes_reads_the_kernel_log_and_spools_on_the_host() -> TestResult {
    let (_, docs) = rendered_default()?;
    let ds = find(docs, "DaemonSet", "gpuscope-probe")?;
    let pod = pod_spec(ds);
    let c = containers(ds).into_iter().next().ok_or("probe without container")?;

    // On NVIDIA nodes only: GPU feature discovery's label or NFD's PCI vendor label (ORed terms).
    let terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()
        .ok_or("no required node affinity")?;
    let keys: BTreeSet<&str> = terms
        .iter()
        .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten())
        .filter(|e| e["operator"] == "In" && strings(&e["values"]) == ["true"])
        .filter_map(|e| e["key"].as_str())
        .collect();
    assert!(keys.contains("nvidia.com/gpu.present") && keys.contains("feature.node.kubernetes.io/pci-10de.present"));
    assert!(pod["nodeSelector"].is_null(), "a nodeSelector would AND with the affinity terms");

    // Tolerates GPU taints and the operator's own remediation taint (else it could never see a node recover).
    let tolerated: BTreeSet<&str> = pod["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["operator"] == "Exists" && t["effect"].is_null())
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(tolerated, BTreeSet::from(["nvidia.com/gpu", OPERATOR_TAINT_KEY]));

    // The downward API gives it its node and Lease identity.
    assert_eq!(env_field_path(c, "NODE_NAME"), Some("spec.nodeName"));
    assert_eq!(env_field_path(c, "POD_NAMESPACE"), Some("metadata.namespace"));
    assert_eq!(env_field_path(c, "POD_NAME"), Some("metadata.name"));

    // /dev/kmsg read-only from the host, the spool on a hostPath, both where the flags point.
    let args = strings(&c["args"]);
    let mounts = c["volumeMounts"].as_array().ok_or("no volume mounts")?;
    let mount = |path: &str| mounts.iter().find(|m| m["mountPath"] == path);
    let volume = |name: &Value| pod["volumes"].as_array().and_then(|v| v.iter().find(|v| v["name"] == *name));
    let kmsg_path = flag(&args, "--kmsg-path").ok_or("no --kmsg-path")?;
    let kmsg_mount = mount(kmsg_path).ok_or("kmsg not mounted")?;
    assert_eq!(kmsg_mount["readOnly"], true);
    let kmsg = volume(&kmsg_mount["name"]).ok_or("kmsg volume")?;
    assert_eq!(kmsg["hostPath"]["path"], "/dev/kmsg");
    assert_eq!(kmsg["hostPath"]["type"], "CharDevice");
    let spool_dir = flag(&args, "--spool-dir").ok_or("no --spool-dir")?;
    let spool = volume(&mount(spool_dir).ok_or("spool not mounted")?["name"]).ok_or("spool volume")?;
    assert_eq!(spool["hostPath"]["path"], "/var/lib/gpuscope");
    assert_eq!(spool["hostPath"]["type"], "DirectoryOrCreate");
    // The kubelet's pod-resources directory, read-only, where the probe's default socket path points.
    let pod_resources = mount("/var/lib/kubelet/pod-resources").ok_or("pod-resources not mounted")?;
    assert_eq!(pod_resources["readOnly"], true);
    let pod_resources = volume(&pod_resources["name"]).ok_or("pod-resources volume")?;
    assert_eq!(pod_resources["hostPath"]["path"], "/var/lib/kubelet/pod-resources");
    assert_eq!(pod_resources["hostPath"]["type"], "Directory");
    assert_eq!(
        gpuscope_probe::pod_resources::DEFAULT_SOCKET,
        "/var/lib/kubelet/pod-resources/kubelet.sock",
        "the probe's default socket is inside the mount"
    );
    assert_eq!(pod["volumes"].as_array().map(Vec::len), Some(3), "no other host access");
    assert!(pod["runtimeClassName"].is_null(), "the NVIDIA RuntimeClass is an option (components/nvidia-runtime)");

    // Sized for a probe whose RSS target is under 20 MiB.
    let r = &c["resources"];
    assert_eq!(quantity(&r["requests"]["cpu"]), Some(0.01));
    assert_eq!(quantity(&r["requests"]["memory"]), Some(24.0 * MIB));
    assert_eq!(quantity(&r["limits"]["cpu"]), Some(0.2));
    assert_eq!(quantity(&r["limits"]["memory"]), Some(64.0 * MIB));
    Ok(())
}

#[test]
fn operator_runs_two_leader_elected_replicas_behind_a_disruption_budget() -> TestResult {
    let (_, docs) = rendered_default()?;
    let d = find(docs, "Deployment", "gpuscope-operator")?;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0, "a rollout keeps the standby");
    let c = containers(d).into_iter().next().ok_or("operator without container")?;
    assert_eq!(env_field_path(c, "POD_NAME"), Some("metadata.name"), "leader-election identity");
    assert_eq!(env_field_path(c, "POD_NAMESPACE"), Some("metadata.namespace"), "where the Leases live");
    assert_eq!(flag(&strings(&c["args"]), "--leader-lease"), Some("gpuscope-operator"));

    // Shipped as policy/v1 (Kubernetes 1.21+); only the 1.20 dry run below rewrites it.
    let pdb = find(docs, "PodDisruptionBudget", "gpuscope-operator")?;
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let selector = pdb["spec"]["selector"]["matchLabels"].as_object().ok_or("PDB without matchLabels")?;
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&d["spec"]["template"]["metadata"]["labels"][k], v, "the PDB selects the operator's pods");
    }
    let svc = find(docs, "Service", "gpuscope-operator-metrics")?;
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    Ok(())
}

#[test]
fn mcp_facade_serves_http_behind_a_token_and_a_network_policy() -> TestResult {
    let (_, docs) = rendered_default()?;
    let d = find(docs, "Deployment", "gpuscope-mcp")?;
    let pod = pod_spec(d);
    let c = containers(d).into_iter().next().ok_or("facade without container")?;
    let args = strings(&c["args"]);
    assert_eq!(flag(&args, "--transport"), Some("http"));
    let listen = flag(&args, "--listen").ok_or("no --listen")?;
    let port: u16 = listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or("--listen without port")?;
    assert_eq!(c["ports"][0]["containerPort"], port);

    // The Host allow-list admits the Service's in-cluster names (else every in-cluster client is refused).
    let svc = find(docs, "Service", "gpuscope-mcp")?;
    let hosts: BTreeSet<&str> = flag(&args, "--allowed-hosts").ok_or("no --allowed-hosts")?.split(',').collect();
    for host in ["gpuscope-mcp", "gpuscope-mcp.gpuscope-system.svc", "gpuscope-mcp.gpuscope-system.svc.cluster.local"] {
        assert!(hosts.contains(host), "{host} missing from --allowed-hosts");
    }
    assert_eq!(name_of(svc), "gpuscope-mcp");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    for (k, v) in svc["spec"]["selector"].as_object().ok_or("Service without selector")? {
        assert_eq!(&pod_labels(d)[k], v, "the Service selects the facade's pods");
    }

    // The token comes from a mounted Secret, never from the command line.
    let token_file = Path::new(flag(&args, "--bearer-token-file").ok_or("no --bearer-token-file")?);
    let mounts = c["volumeMounts"].as_array().ok_or("no volume mounts")?;
    let mount = mounts
        .iter()
        .find(|m| token_file.parent() == m["mountPath"].as_str().map(Path::new))
        .ok_or("token not mounted")?;
    let volume =
        pod["volumes"].as_array().and_then(|v| v.iter().find(|v| v["name"] == mount["name"])).ok_or("volume")?;
    assert_eq!(volume["secret"]["secretName"], "gpuscope-mcp-token");
    assert_eq!(volume["secret"]["items"][0]["path"].as_str(), token_file.file_name().and_then(|f| f.to_str()));
    assert!(!args.iter().any(|a| a.contains("BEARER_TOKEN=")), "no token in args");

    // Ingress only to the MCP port, only from namespaces an admin labelled.
    let np = find(docs, "NetworkPolicy", "gpuscope-mcp")?;
    assert_eq!(strings(&np["spec"]["policyTypes"]), ["Ingress"]);
    for (k, v) in np["spec"]["podSelector"]["matchLabels"].as_object().ok_or("policy without podSelector")? {
        assert_eq!(&pod_labels(d)[k], v, "the policy selects the facade's pods");
    }
    let mut allowed = BTreeSet::new();
    for rule in np["spec"]["ingress"].as_array().ok_or("no ingress rules")? {
        let ports: Vec<&Value> =
            rule["ports"].as_array().map(|p| p.iter().map(|p| &p["port"]).collect()).unwrap_or_default();
        assert_eq!(ports, [&Value::from(port)], "a rule opens exactly the facade's port");
        let from = rule["from"].as_array().ok_or("a rule without `from` admits everyone")?;
        assert!(!from.is_empty(), "a rule with empty `from` admits everyone");
        for peer in from {
            assert!(peer["ipBlock"].is_null() && peer["podSelector"].is_null(), "peers are namespaces: {peer}");
            let labels = peer["namespaceSelector"]["matchLabels"].as_object().ok_or("namespaceSelector")?;
            assert!(!labels.is_empty(), "an empty namespaceSelector admits every namespace");
            allowed.extend(labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    assert_eq!(
        allowed,
        BTreeSet::from([
            "gpuscope.dev/mcp-access=allowed".to_string(),
            "gpuscope.dev/metrics-access=allowed".to_string()
        ])
    );
    Ok(())
}

fn pod_labels(workload: &Value) -> &Value {
    &workload["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn container_flags_are_accepted_by_the_real_binaries() -> TestResult {
    // clap parses every flag before it acts on --help, so `<binary> <manifest args> --help` succeeds only when
    // the manifest's flags exist and their values parse. Required flags that come from the environment
    // (NODE_NAME) are not checked this way, and files (the token) are not opened. The probe options that change
    // its flags are checked too.
    let no_kmsg = parse_stream(&render_with_components(&["components/no-kmsg"])?)?;
    let entrypoints = BTreeMap::from([(OPERATOR_IMAGE, "gpuscope-operator"), (PROBE_IMAGE, "gpuscope-probe")]);
    let mut checked = BTreeSet::new();
    for w in workloads(&rendered_default()?.1).into_iter().chain(workloads(&no_kmsg)) {
        for c in containers(w) {
            let image = c["image"].as_str().unwrap_or_default();
            let repo = image.rsplit_once(':').map(|(r, _)| r).unwrap_or(image);
            let binary = match strings(&c["command"]).first() {
                Some(cmd) => Path::new(cmd).file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string(),
                None => entrypoints.get(repo).ok_or(format!("unknown image {image}"))?.to_string(),
            };
            let path = workspace_binary(&binary)?;
            let args = strings(&c["args"]);
            let out = run_ok(Command::new(&path).args(&args).arg("--help").env_clear())
                .map_err(|e| format!("{} rejects its manifest flags {args:?}: {e}", name_of(w)))?;
            assert!(out.contains("Usage:"), "{binary} printed help");
            checked.insert(binary);
        }
    }
    assert_eq!(checked, BTreeSet::from(["gpuscope-mcp", "gpuscope-operator", "gpuscope-probe"].map(String::from)));
    Ok(())
}

#[test]
fn sample_policy_spells_out_exactly_the_built_in_defaults() -> TestResult {
    let docs = parse_stream(&kustomize(&config("samples"))?)?;
    assert_eq!(docs.len(), 1);
    let policy: GpuHealthPolicy = serde_json::from_value(docs[0].clone())?;
    assert_eq!(policy.metadata.name.as_deref(), Some(gpuscope_crds::policy::DEFAULT_POLICY_NAME));
    assert_eq!(policy.spec.validate()?, EffectivePolicy::default(), "the sample changes nothing until edited");
    // Every section is spelled out, so a user sees each knob.
    for field in [
        "temperature",
        "ecc",
        "retiredPages",
        "rowRemapping",
        "xidWindow",
        "applicationXidRate",
        "heartbeatTimeout",
        "remediation",
    ] {
        assert!(!docs[0]["spec"][field].is_null(), "sample omits {field}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Against the real API server (1.20)

/// The install namespace for real (a server-side dry run cannot see a Namespace created in the same dry run).
/// The CRDs are already applied for real by `ControlPlane::shared()`. Idempotent: other tests share both.
fn install_namespace(cp: &ControlPlane) -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        run_ok(
            cp.kubectl()
                .args(["apply", "--server-side", "--force-conflicts", "--field-manager=gpuscope-install-test", "-f"])
                .arg(config("default").join("namespace.yaml")),
        )
        .map(|_| ())
    })
    .clone()
}

/// The test control plane is Kubernetes 1.20, which serves PodDisruptionBudget only as policy/v1beta1 (v1 came
/// in 1.21). config/ ships policy/v1 for real clusters; the spec it uses (minAvailable, selector) is the same in
/// both, so the dry run rewrites just that apiVersion. Returns the text and how many were rewritten.
fn for_kube_1_20(rendered: &str) -> (String, usize) {
    let v1 = "apiVersion: policy/v1\nkind: PodDisruptionBudget\n";
    (rendered.replace(v1, "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\n"), rendered.matches(v1).count())
}

/// `kubectl apply --server-side --dry-run=server` of a YAML stream: validated, defaulted and admitted by the API
/// server, persisted nowhere. --force-conflicts because other tests apply the same RBAC for real.
fn server_dry_run(cp: &ControlPlane, yaml: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut child = cp
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=gpuscope-install-test",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("kubectl stdin")?.write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("server dry run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(stdout)
}

#[test]
fn default_install_passes_a_server_side_dry_run_on_the_real_api_server() -> TestResult {
    let cp = ControlPlane::shared()?;
    install_namespace(cp)?;
    let (text, docs) = rendered_default()?;
    let (text, rewritten) = for_kube_1_20(text);
    assert_eq!(rewritten, 1, "exactly the operator's PodDisruptionBudget is policy/v1");
    let out = server_dry_run(cp, &text)?;
    let accepted = out.lines().filter(|l| l.ends_with("(server dry run)")).count();
    assert_eq!(accepted, docs.len(), "every object accepted:\n{out}");
    for line in ["daemonset.apps/gpuscope-probe", "deployment.apps/gpuscope-operator", "deployment.apps/gpuscope-mcp"] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
    Ok(())
}

#[test]
fn probe_options_render_and_pass_the_dry_run() -> TestResult {
    let cp = ControlPlane::shared()?;
    install_namespace(cp)?;
    for component in ["components/nvidia-runtime", "components/kmsg-privileged", "components/no-kmsg"] {
        let text = render_with_components(&[component])?;
        let docs = parse_stream(&text)?;
        let ds = find(&docs, "DaemonSet", "gpuscope-probe")?;
        let c = containers(ds).into_iter().next().ok_or("probe without container")?;
        let sc = &c["securityContext"];
        let args = strings(&c["args"]);
        let mounts: Vec<&str> =
            c["volumeMounts"].as_array().into_iter().flatten().filter_map(|m| m["mountPath"].as_str()).collect();
        match component {
            "components/nvidia-runtime" => {
                assert_eq!(pod_spec(ds)["runtimeClassName"], "nvidia");
                assert_eq!(sc["privileged"], false);
            }
            "components/kmsg-privileged" => {
                // The API refuses privileged with allowPrivilegeEscalation=false; the dry run proves the pair.
                assert_eq!(
                    (&sc["privileged"], &sc["allowPrivilegeEscalation"]),
                    (&Value::Bool(true), &Value::Bool(true))
                );
                assert!(mounts.contains(&"/dev/kmsg"));
                let why = ds["metadata"]["annotations"][SECURITY_EXCEPTION].as_str().unwrap_or_default();
                assert!(why.starts_with("Privileged"), "the exception says privileged: {why}");
            }
            _ => {
                assert!(args.contains(&"--no-kmsg".to_string()) && flag(&args, "--kmsg-path").is_none());
                assert!(!mounts.contains(&"/dev/kmsg"), "no kernel log mounted");
                assert!(pod_spec(ds)["volumes"].as_array().is_some_and(|v| v.iter().all(|v| v["name"] != "kmsg")));
                assert!(sc["capabilities"]["add"].is_null(), "no capability: {}", sc["capabilities"]);
                assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
            }
        }
        // The option adds and removes no object.
        assert_eq!(docs.len(), rendered_default()?.1.len(), "{component}");
        let (text, _) = for_kube_1_20(&text);
        let out = server_dry_run(cp, &text).map_err(|e| format!("{component}: {e}"))?;
        assert!(out.contains("daemonset.apps/gpuscope-probe serverside-applied (server dry run)"), "{out}");
    }
    Ok(())
}

#[test]
fn sample_policy_is_accepted_by_the_crd_schema() -> TestResult {
    let cp = ControlPlane::shared()?;
    let out = server_dry_run(cp, &kustomize(&config("samples"))?)?;
    assert!(out.contains("gpuhealthpolicy.gpuscope.dev/default serverside-applied (server dry run)"), "{out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// RBAC, as each component's identity

/// config/rbac applied for real, once per process (idempotent: other tests apply the same files).
fn with_rbac() -> Result<&'static ControlPlane, String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = ControlPlane::shared().map_err(|e| e.to_string())?;
    DONE.get_or_init(|| {
        install_namespace(cp)?;
        run_ok(cp.kubectl().args(["apply", "--server-side", "--force-conflicts", "-k"]).arg(config("rbac"))).map(|_| ())
    })
    .clone()?;
    Ok(cp)
}

fn kubectl_as(cp: &ControlPlane, who: Identity) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(cp.kubeconfig_for(who));
    cmd
}

/// `kubectl auth can-i <args>` as `who`: true for "yes", false for "no" (which exits 1), an error otherwise.
fn can_i(cp: &ControlPlane, who: Identity, args: &str) -> Result<bool, String> {
    let out = kubectl_as(cp, who)
        .args(["auth", "can-i"])
        .args(args.split_whitespace())
        .output()
        .map_err(|e| format!("kubectl auth can-i: {e}"))?;
    match String::from_utf8_lossy(&out.stdout).lines().next().map(str::trim) {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        _ => Err(format!("can-i {args}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// Check a table of (question, expected answer); report every mismatch at once.
fn expect_answers(cp: &ControlPlane, who: Identity, table: &[(&str, bool)]) -> TestResult {
    let mut wrong = Vec::new();
    for (question, expected) in table {
        let answer = can_i(cp, who, question)?;
        if answer != *expected {
            wrong.push(format!("can-i {question}: {answer}, expected {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}:\n{}", who.name(), wrong.join("\n"));
    Ok(())
}

/// The resource rules `kubectl auth can-i --list` reports for `who` in `namespace` (cluster-wide rules included),
/// as resource → verbs; non-resource URLs are skipped.
fn rules(cp: &ControlPlane, who: Identity, namespace: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let out = run_ok(kubectl_as(cp, who).args(["auth", "can-i", "--list", "-n", namespace]))?;
    let mut rules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines().skip(1) {
        // Non-resource rows have an empty first column; resource rows start with the resource.
        if line.starts_with(char::is_whitespace) || line.trim().is_empty() {
            continue;
        }
        let resource = line.split_whitespace().next().unwrap_or_default().to_string();
        let verbs = line.rsplit_once('[').map(|(_, v)| v.trim_end().trim_end_matches(']')).unwrap_or_default();
        rules.entry(resource).or_default().extend(verbs.split_whitespace().map(str::to_string));
    }
    Ok(rules)
}

/// What every authenticated user may do (system:basic-user): ask the API what it may do.
fn is_self_review(resource: &str) -> bool {
    resource.starts_with("selfsubject")
}

#[test]
fn probe_may_write_only_its_status_and_lease() -> TestResult {
    let cp = with_rbac()?;
    let ns = INSTALL_NAMESPACE;
    let gns = "gpunodestatuses.gpuscope.dev";
    let leases = "leases.coordination.k8s.io";
    expect_answers(
        cp,
        Identity::Probe,
        &[
            (&format!("create {gns}"), true),
            (&format!("get {gns}"), true),
            (&format!("patch {gns} --subresource=status"), true),
            ("get nodes", true),
            (&format!("get {leases} -n {ns}"), true),
            (&format!("create {leases} -n {ns}"), true),
            (&format!("patch {leases} -n {ns}"), true),
            // Nothing that changes or removes what others own.
            ("delete nodes", false),
            ("patch nodes", false),
            ("patch nodes --subresource=status", false),
            ("list nodes", false),
            (&format!("patch {gns}"), false),
            (&format!("delete {gns}"), false),
            (&format!("list {gns}"), false),
            (&format!("delete {leases} -n {ns}"), false),
            (&format!("create {leases} -n default"), false),
            ("get gpuhealthpolicies.gpuscope.dev", false),
            (&format!("get secrets -n {ns}"), false),
            // Pods' metadata, to name the UID and controller of the pods holding its GPUs: list only.
            ("list pods --all-namespaces", true),
            ("get pods --all-namespaces", false),
            ("watch pods --all-namespaces", false),
            ("delete pods --all-namespaces", false),
            ("patch pods --all-namespaces", false),
            ("create events --all-namespaces", false),
            ("create events.events.k8s.io --all-namespaces", false),
        ],
    )?;
    // The complete list, in its namespace: no resource outside these.
    let allowed = BTreeSet::from([
        gns.to_string(),
        format!("{gns}/status"),
        "nodes".to_string(),
        "pods".to_string(),
        leases.to_string(),
    ]);
    for (resource, verbs) in rules(cp, Identity::Probe, ns)? {
        if is_self_review(&resource) {
            continue;
        }
        assert!(allowed.contains(&resource), "probe may {verbs:?} {resource}");
        assert!(!verbs.contains("delete") && !verbs.contains("*"), "probe may {verbs:?} {resource}");
    }
    Ok(())
}

#[test]
fn operator_may_write_conditions_node_state_and_events_but_delete_nothing() -> TestResult {
    let cp = with_rbac()?;
    let ns = INSTALL_NAMESPACE;
    let gns = "gpunodestatuses.gpuscope.dev";
    let ghp = "gpuhealthpolicies.gpuscope.dev";
    let leases = "leases.coordination.k8s.io";
    let events = "events.events.k8s.io";
    expect_answers(
        cp,
        Identity::Operator,
        &[
            (&format!("watch {gns}"), true),
            (&format!("patch {gns} --subresource=status"), true),
            (&format!("watch {ghp}"), true),
            (&format!("patch {ghp} --subresource=status"), true),
            ("watch nodes", true),
            // Taint and cordon (policy opt-in), and the GPUHealthy Node condition.
            ("patch nodes", true),
            ("patch nodes --subresource=status", true),
            (&format!("watch {leases} -n {ns}"), true),
            (&format!("create {leases} -n {ns}"), true),
            (&format!("create {events} -n default"), true),
            (&format!("create {events} -n kube-system"), true),
            // Never: deleting, creating Nodes, writing the users' policy spec, evicting pods, reading secrets.
            ("delete nodes", false),
            ("create nodes", false),
            (&format!("delete {gns}"), false),
            (&format!("create {gns}"), false),
            (&format!("patch {ghp}"), false),
            (&format!("delete {ghp}"), false),
            ("create pods --subresource=eviction --all-namespaces", false),
            ("delete pods --all-namespaces", false),
            ("get secrets --all-namespaces", false),
            (&format!("create {leases} -n default"), false),
            (&format!("create {events} -n {ns}"), false),
        ],
    )?;
    for namespace in [ns, "default", "kube-system"] {
        for (resource, verbs) in rules(cp, Identity::Operator, namespace)? {
            assert!(
                !verbs.contains("delete") && !verbs.contains("deletecollection") && !verbs.contains("*"),
                "operator may {verbs:?} {resource} in {namespace}"
            );
        }
    }
    Ok(())
}

#[test]
fn mcp_facade_may_read_its_cache_and_write_nothing() -> TestResult {
    let cp = with_rbac()?;
    let mut table: Vec<(String, bool)> = Vec::new();
    let readable = ["gpunodestatuses.gpuscope.dev", "nodes", "pods"];
    for resource in readable {
        for verb in ["get", "list", "watch"] {
            table.push((format!("{verb} {resource} --all-namespaces"), true));
        }
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            table.push((format!("{verb} {resource} --all-namespaces"), false));
            table.push((format!("{verb} {resource} --subresource=status --all-namespaces"), false));
        }
    }
    // Freshness comes from the operator's ProbeReporting condition, so no Leases; and no secrets, ever.
    table.push((format!("get leases.coordination.k8s.io -n {INSTALL_NAMESPACE}"), false));
    table.push(("get secrets --all-namespaces".to_string(), false));
    table.push(("create pods --subresource=exec --all-namespaces".to_string(), false));
    let table: Vec<(&str, bool)> = table.iter().map(|(q, a)| (q.as_str(), *a)).collect();
    expect_answers(cp, Identity::Mcp, &table)?;

    // The complete list: read verbs only, anywhere.
    for namespace in [INSTALL_NAMESPACE, "default", "kube-system"] {
        let rules = rules(cp, Identity::Mcp, namespace)?;
        let readers: BTreeSet<&str> = rules.keys().map(String::as_str).filter(|r| !is_self_review(r)).collect();
        assert_eq!(readers, BTreeSet::from(["gpunodestatuses.gpuscope.dev", "nodes", "pods"]), "in {namespace}");
        for (resource, verbs) in rules.iter().filter(|(r, _)| !is_self_review(r)) {
            let read_only = verbs.iter().all(|v| matches!(v.as_str(), "get" | "list" | "watch"));
            assert!(read_only, "facade may {verbs:?} {resource} in {namespace}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Dockerfiles (no Docker engine here: their structure is checked instead of a build)

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its FROM image, its `AS` name and its instructions after FROM.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions.iter().filter(move |i| i.keyword == keyword).map(|i| i.args.as_str())
    }
}

/// Parse a Dockerfile the way BuildKit splits it: `#` lines are comments (also inside a continuation), a trailing
/// backslash continues the instruction, the first word is the keyword.
fn parse_dockerfile(text: &str) -> Result<Vec<Stage>, String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.trim().split_once(char::is_whitespace).unwrap_or((current.trim(), ""));
                instructions.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() });
                current.clear();
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions {
        if i.keyword == "FROM" {
            let words: Vec<&str> = i.args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let (image, name) = match words.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => (image.to_string(), Some(name.to_string())),
                _ => return Err(format!("FROM {}", i.args)),
            };
            stages.push(Stage { image, name, instructions: Vec::new() });
        } else {
            stages.last_mut().ok_or(format!("{} before FROM", i.keyword))?.instructions.push(i);
        }
    }
    Ok(stages)
}

/// `[[bin]] name` entries of a crate's Cargo.toml.
fn bin_names(crate_dir: &str) -> Result<BTreeSet<String>, std::io::Error> {
    let manifest = std::fs::read_to_string(workspace_root().join(crate_dir).join("Cargo.toml"))?;
    let mut names = BTreeSet::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name") {
            names.insert(v.trim_start().trim_start_matches('=').trim().trim_matches('"').to_string());
        }
    }
    Ok(names)
}

/// The container ports the rendered manifests declare for containers running `image`.
fn manifest_ports(docs: &[Value], image: &str) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for w in workloads(docs) {
        for c in containers(w).into_iter().filter(|c| c["image"].as_str().is_some_and(|i| i.starts_with(image))) {
            for p in c["ports"].as_array().into_iter().flatten() {
                ports.extend(p["containerPort"].as_u64().and_then(|n| u16::try_from(n).ok()));
            }
        }
    }
    ports
}

/// The binaries a final stage copies out of the builder, as their destination paths.
fn copied_binaries(stage: &Stage) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for args in stage.all("COPY") {
        let words: Vec<&str> = args.split_whitespace().collect();
        assert!(words.contains(&"--from=builder"), "the runtime copies only from the builder: COPY {args}");
        let files: Vec<&str> = words.iter().copied().filter(|w| !w.starts_with("--")).collect();
        let [src, dst] = files.as_slice() else { return Err(format!("COPY {args}")) };
        let name = |p: &str| Path::new(p).file_name().and_then(|f| f.to_str()).map(str::to_string);
        assert_eq!(name(src), name(dst), "COPY {args} renames the binary");
        out.insert(dst.to_string());
    }
    Ok(out)
}

struct ImageSpec {
    dockerfile: &'static str,
    image: &'static str,
    /// (crate directory, cargo package, binary name)
    binaries: &'static [(&'static str, &'static str, &'static str)],
    entrypoint: &'static str,
}

const IMAGES: [ImageSpec; 2] = [
    ImageSpec {
        dockerfile: "Dockerfile.operator",
        image: OPERATOR_IMAGE,
        binaries: &[
            ("operator", "gpuscope-operator", "gpuscope-operator"),
            ("mcp-facade", "gpuscope-mcp", "gpuscope-mcp"),
        ],
        entrypoint: "/usr/local/bin/gpuscope-operator",
    },
    ImageSpec {
        dockerfile: "Dockerfile.probe",
        image: PROBE_IMAGE,
        binaries: &[("node-probe", "gpuscope-probe", "gpuscope-probe")],
        entrypoint: "/usr/local/bin/gpuscope-probe",
    },
];

#[test]
fn dockerfiles_build_cached_release_binaries_and_ship_them_small_and_non_root() -> TestResult {
    let (_, docs) = rendered_default()?;
    for spec in IMAGES {
        let text = std::fs::read_to_string(workspace_root().join(spec.dockerfile))?;
        let stages = parse_dockerfile(&text)?;
        let file = spec.dockerfile;
        assert!(stages.len() >= 2, "{file} is multi-stage");
        let builder = stages.iter().find(|s| s.name.as_deref() == Some("builder")).ok_or("no builder stage")?;
        let runtime = stages.last().ok_or("no stage")?;

        // Every base image is pinned to a tag or digest, never `latest`; stage references are by name.
        let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
        for s in &stages {
            if names.contains(&s.image.as_str()) {
                continue;
            }
            let last = s.image.rsplit('/').next().unwrap_or_default();
            let pinned = s.image.contains("@sha256:") || last.split_once(':').is_some_and(|(_, t)| t != "latest");
            assert!(pinned, "{file}: FROM {} is not pinned", s.image);
        }
        assert!(!text.contains(":latest"), "{file} mentions a latest tag");
        assert!(builder.image.starts_with("rust:"), "{file} builds with the Rust image: {}", builder.image);

        // One cached, locked, release build of the right packages.
        let build = builder.all("RUN").find(|r| r.contains("cargo build")).ok_or(format!("{file}: no cargo build"))?;
        for needle in ["--mount=type=cache,target=/usr/local/cargo/registry", "--locked", "--release"] {
            assert!(build.contains(needle), "{file}: cargo build without {needle}");
        }
        assert!(build.contains("--mount=type=cache,target=/src/target"), "{file}: target dir not cached");
        for (_, package, _) in spec.binaries {
            assert!(build.contains(&format!("-p {package}")), "{file} builds {package}");
        }

        // The runtime ships exactly the binaries, under the names Cargo gives them.
        let shipped = copied_binaries(runtime)?;
        let expected: BTreeSet<String> = spec.binaries.iter().map(|(_, _, b)| format!("/usr/local/bin/{b}")).collect();
        assert_eq!(shipped, expected, "{file} ships");
        for (dir, _, binary) in spec.binaries {
            assert!(bin_names(dir)?.contains(*binary), "{dir}/Cargo.toml has no [[bin]] {binary}");
            assert!(build.contains(&format!("target/release/{binary}")), "{file} copies {binary} out of the cache");
        }
        assert_eq!(runtime.all("ENTRYPOINT").collect::<Vec<_>>(), [format!("[\"{}\"]", spec.entrypoint)]);

        // Small, glibc-based (NVML is a glibc library the NVIDIA runtime mounts), non-root by default.
        assert!(runtime.image.starts_with("gcr.io/distroless/cc-debian12:"), "{file} runtime base: {}", runtime.image);
        let user = runtime.all("USER").last().ok_or(format!("{file}: no USER in the final stage"))?;
        let uid = user.split(':').next().unwrap_or_default();
        let uid: u32 =
            uid.parse().map_err(|_| format!("{file}: USER {user} is not numeric (runAsNonRoot needs it)"))?;
        assert!(uid > 0, "{file} runs as root");

        // EXPOSE matches what the manifests run on that image.
        let exposed: BTreeSet<u16> = runtime
            .all("EXPOSE")
            .flat_map(|a| a.split_whitespace())
            .filter_map(|p| p.split('/').next()?.parse().ok())
            .collect();
        assert_eq!(exposed, manifest_ports(docs, spec.image), "{file} EXPOSE vs config/");
    }

    // The facade runs from the operator image with its own command, which that image must contain.
    let mcp = find(docs, "Deployment", "gpuscope-mcp")?;
    let c = containers(mcp).into_iter().next().ok_or("facade without container")?;
    assert!(c["image"].as_str().is_some_and(|i| i.starts_with(OPERATOR_IMAGE)));
    let operator_stages = parse_dockerfile(&std::fs::read_to_string(workspace_root().join("Dockerfile.operator"))?)?;
    let shipped = copied_binaries(operator_stages.last().ok_or("no stage")?)?;
    assert!(strings(&c["command"]).first().is_some_and(|cmd| shipped.contains(cmd)), "facade command {}", c["command"]);
    Ok(())
}

#[test]
fn dockerfile_parser_joins_continuations_and_skips_comments() -> TestResult {
    let stages = parse_dockerfile(
        "# syntax=docker/dockerfile:1.7\nFROM rust:1.95-bookworm AS builder\nRUN a \\\n  # inside\n  && b\n\nFROM x:1\nUSER 1:1\n",
    )?;
    assert_eq!(stages.len(), 2);
    assert_eq!((stages[0].image.as_str(), stages[0].name.as_deref()), ("rust:1.95-bookworm", Some("builder")));
    assert_eq!(stages[0].all("RUN").collect::<Vec<_>>(), ["a  && b"]);
    assert_eq!(stages[1].all("USER").collect::<Vec<_>>(), ["1:1"]);
    assert!(parse_dockerfile("USER 1\n").is_err(), "an instruction before FROM is an error");
    Ok(())
}

#[test]
fn docker_context_leaves_out_build_output_and_history() -> TestResult {
    let ignore = std::fs::read_to_string(workspace_root().join(".dockerignore"))?;
    let entries: BTreeSet<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for must in ["target/", ".git/"] {
        assert!(entries.contains(must), ".dockerignore lacks {must}");
    }
    // Cargo needs every workspace member's sources and the lock file.
    for needed in ["Cargo.lock", "Cargo.toml", "crds/", "operator/", "node-probe/", "mcp-facade/", "tests/"] {
        assert!(!entries.contains(needed), ".dockerignore drops {needed}, which the build needs");
    }
    Ok(())
}

/// Every container image of a rendered install.
fn images(docs: &[Value]) -> BTreeSet<String> {
    workloads(docs).into_iter().flat_map(containers).filter_map(|c| c["image"].as_str().map(String::from)).collect()
}

#[test]
fn the_example_overlay_chooses_the_kernel_log_and_one_command_points_it_at_your_registry() -> TestResult {
    let shipped = parse_stream(&kustomize(&config("overlays/example"))?)?;
    let expected = |registry: &str| {
        BTreeSet::from([format!("{registry}/gpuscope-operator:0.1.0"), format!("{registry}/gpuscope-probe:0.1.0")])
    };
    assert_eq!(images(&shipped), expected("registry.example.com/gpuscope"));
    let probe = find(&shipped, "DaemonSet", "gpuscope-probe")?;
    assert_eq!(containers(probe)[0]["securityContext"]["privileged"], true, "the overlay chose kmsg-privileged");
    assert_eq!(shipped.len(), rendered_default()?.1.len(), "everything config/default installs");

    // The command the overlay's comment gives, run as written (from the repository root) on a copy of config/.
    let text = std::fs::read_to_string(config("overlays/example/kustomization.yaml"))?;
    let command = text
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("sed -i "))
        .next()
        .ok_or("no sed command in the overlay's comment")?;
    let command = format!("sed -i {command}").replace("<your-registry>", "registry.internal:5000/platform");
    let copy = tempfile::tempdir()?;
    run_ok(Command::new("cp").arg("-r").arg(config("")).arg(copy.path()))?;
    run_ok(Command::new("sh").args(["-c", &command]).current_dir(copy.path()))?;
    let pointed = parse_stream(&kustomize(&copy.path().join("config/overlays/example"))?)?;
    assert_eq!(images(&pointed), expected("registry.internal:5000/platform"), "after `{command}`");
    Ok(())
}

#[test]
fn the_example_overlay_passes_the_dry_run() -> TestResult {
    let cp = ControlPlane::shared()?;
    install_namespace(cp)?;
    let (text, _) = for_kube_1_20(&kustomize(&config("overlays/example"))?);
    let out = server_dry_run(cp, &text)?;
    assert!(out.contains("daemonset.apps/gpuscope-probe"), "{out}");
    Ok(())
}
