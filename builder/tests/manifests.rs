//! The base-service manifests, rendered for an example cluster, checked the way k3s and the
//! Kubernetes API server would see them (issue 5's "done when").
//!
//! Plain Kubernetes objects are validated offline against the official OpenAPI schemas of
//! Kubernetes 1.31 (what k3s v1.31 runs) with PyPI's `kubernetes-validate`; install it with
//! `pip install kubernetes-validate==1.37.0`.

use piimg::manifests::{
    credentials, render, render_all, RenderedFile, Service, ServiceCredentials, ServiceSelection,
    TemplateValues,
};
use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The validator's version of Kubernetes: k3s v1.31 pins Kubernetes 1.31.
const KUBERNETES_VERSION: &str = "1.31.0";
const VALIDATOR_INSTALL: &str = "pip install kubernetes-validate==1.37.0";

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn example_values() -> TemplateValues {
    TemplateValues::new("homelab", "lab.example")
}

fn example_credentials() -> ServiceCredentials {
    credentials::generate_from_seed([42; 32])
}

fn render_example(services: &ServiceSelection) -> Vec<RenderedFile> {
    render_all(
        &manifests_dir(),
        &example_values(),
        services,
        &example_credentials(),
        &[],
    )
    .unwrap_or_else(|e| panic!("rendering the example cluster failed: {e}"))
}

/// Every document of a file, with its file for messages.
fn documents(file: &RenderedFile) -> Vec<Value> {
    let text = std::str::from_utf8(&file.bytes).expect("rendered files are UTF-8");
    serde_norway::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| {
                panic!("{}: does not parse as YAML: {e}", file.rel_path.display())
            })
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn all_documents(files: &[RenderedFile]) -> Vec<(PathBuf, bool, Value)> {
    files
        .iter()
        .flat_map(|f| {
            documents(f)
                .into_iter()
                .map(move |d| (f.rel_path.clone(), f.secret, d))
        })
        .collect()
}

fn str_at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = doc;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str()
}

fn values_of(doc: &Value) -> Option<Value> {
    str_at(doc, &["spec", "valuesContent"])
        .map(|text| serde_norway::from_str(text).expect("valuesContent parses"))
}

#[test]
fn every_document_parses_and_names_itself() {
    let files = render_example(&ServiceSelection::all());
    assert!(
        files.len() > 10,
        "expected the full set of manifests, got {files:?}"
    );
    for (path, _, doc) in all_documents(&files) {
        for key in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            assert!(
                str_at(&doc, key).is_some_and(|s| !s.is_empty()),
                "{}: a document lacks {}",
                path.display(),
                key.join(".")
            );
        }
    }
}

#[test]
fn helm_charts_are_pinned_and_targeted_at_created_namespaces() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let created: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, _, d)| str_at(d, &["kind"]) == Some("Namespace"))
        .filter_map(|(_, _, d)| str_at(d, &["metadata", "name"]))
        .collect();
    let mut charts = 0;
    for (path, _, doc) in &docs {
        let at = path.display();
        if let Some(ns) = str_at(doc, &["metadata", "namespace"]) {
            assert!(
                ns == "kube-system" || created.contains(ns),
                "{at}: namespace {ns} is used but not created"
            );
        }
        if str_at(doc, &["kind"]) != Some("HelmChart") {
            continue;
        }
        charts += 1;
        assert_eq!(
            str_at(doc, &["apiVersion"]),
            Some("helm.cattle.io/v1"),
            "{at}"
        );
        let repo = str_at(doc, &["spec", "repo"])
            .unwrap_or_else(|| panic!("{at}: HelmChart without spec.repo"));
        assert!(
            repo.starts_with("https://"),
            "{at}: repo {repo} is not https"
        );
        assert!(
            !repo.contains("bitnami"),
            "{at}: Bitnami charts are not used"
        );
        assert!(
            str_at(doc, &["spec", "chart"]).is_some(),
            "{at}: HelmChart without spec.chart"
        );
        let version = doc
            .get("spec")
            .and_then(|s| s.get("version"))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{v:?}"))
            })
            .unwrap_or_else(|| panic!("{at}: HelmChart without spec.version"));
        assert!(
            is_exact_version(&version),
            "{at}: chart version `{version}` is not one pinned version"
        );
        let target = str_at(doc, &["spec", "targetNamespace"])
            .unwrap_or_else(|| panic!("{at}: no targetNamespace"));
        assert!(
            created.contains(target),
            "{at}: targetNamespace {target} is not created by namespaces.yaml"
        );
        assert!(
            values_of(doc).is_some(),
            "{at}: HelmChart without valuesContent"
        );
    }
    assert!(
        charts >= 11,
        "expected a HelmChart per chart, found {charts}"
    );
}

/// `1.2.3` (optionally `-pre`), nothing else: no `latest`, no ranges, no wildcards.
fn is_exact_version(v: &str) -> bool {
    let core = v.split_once('-').map_or(v, |(c, _)| c);
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn every_image_in_values_is_pinned() {
    let files = render_example(&ServiceSelection::all());
    let mut images = Vec::new();
    for (path, _, doc) in all_documents(&files) {
        if let Some(values) = values_of(&doc) {
            collect_images(&values, "", &mut images, &path);
        }
    }
    assert!(
        images.len() >= 4,
        "expected images in values, found {images:?}"
    );
    for (path, image) in &images {
        assert!(
            image_is_pinned(image),
            "{}: image `{image}` is not pinned to a tag or digest",
            path.display()
        );
        assert!(
            !image.contains("bitnami"),
            "{}: Bitnami image `{image}`",
            path.display()
        );
    }
}

/// Finds image references: string values of keys named like `image`/`imageName`, and
/// `{repository, tag}` mappings under such keys.
fn collect_images(v: &Value, key: &str, out: &mut Vec<(PathBuf, String)>, path: &Path) {
    let image_key = key.to_ascii_lowercase().ends_with("image") || key == "imageName";
    match v {
        Value::String(s) if image_key => out.push((path.to_path_buf(), s.clone())),
        Value::Mapping(map) => {
            if image_key {
                if let Some(repo) = v.get("repository").and_then(Value::as_str) {
                    let tag = v.get("tag").and_then(Value::as_str).unwrap_or("");
                    out.push((
                        path.to_path_buf(),
                        if tag.is_empty() {
                            repo.to_string()
                        } else {
                            format!("{repo}:{tag}")
                        },
                    ));
                    return;
                }
            }
            for (k, child) in map {
                collect_images(child, k.as_str().unwrap_or(""), out, path);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| collect_images(i, key, out, path)),
        _ => {}
    }
}

fn image_is_pinned(image: &str) -> bool {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        return digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    matches!(last.split_once(':'), Some((_, tag)) if !tag.is_empty() && tag != "latest")
}

#[test]
fn every_resources_block_has_requests_and_limits() {
    let files = render_example(&ServiceSelection::all());
    let mut blocks = 0;
    for (path, _, doc) in all_documents(&files) {
        if let Some(values) = values_of(&doc) {
            check_resources(&values, &path, &mut blocks);
        }
    }
    assert!(
        blocks >= 20,
        "expected resources on every pod the values reach, found {blocks}"
    );
}

fn check_resources(v: &Value, path: &Path, blocks: &mut usize) {
    if let Value::Mapping(map) = v {
        for (k, child) in map {
            // A volume claim's `resources.requests.storage` is not a pod's resources block.
            let claim = child
                .get("requests")
                .and_then(|r| r.get("storage"))
                .is_some();
            if k.as_str() == Some("resources") && child.get("requests").is_some() && !claim {
                *blocks += 1;
                for part in ["requests", "limits"] {
                    for what in ["cpu", "memory"] {
                        assert!(
                            child.get(part).and_then(|p| p.get(what)).is_some(),
                            "{}: a resources block lacks {part}.{what}",
                            path.display()
                        );
                    }
                }
            } else {
                check_resources(child, path, blocks);
            }
        }
    } else if let Value::Sequence(items) = v {
        items.iter().for_each(|i| check_resources(i, path, blocks));
    }
}

#[test]
fn credentials_appear_only_in_secret_files_and_every_referenced_secret_is_rendered() {
    let creds = example_credentials();
    let files = render_example(&ServiceSelection::all());
    for file in &files {
        let text = String::from_utf8_lossy(&file.bytes);
        if file.secret {
            for doc in documents(file) {
                assert_eq!(
                    str_at(&doc, &["kind"]),
                    Some("Secret"),
                    "{}: only Secrets",
                    file.rel_path.display()
                );
            }
            continue;
        }
        for value in creds.values() {
            assert!(
                !text.contains(value),
                "{}: holds a credential value outside a Secret",
                file.rel_path.display()
            );
        }
        assert!(
            !text.contains("minioadmin") && !text.contains("admin/admin"),
            "{}",
            file.rel_path.display()
        );
    }
    // Each file's credentials are base64 in `data`; none appears in clear.
    let rendered: BTreeSet<(String, String)> = all_documents(&files)
        .iter()
        .filter(|(_, _, d)| str_at(d, &["kind"]) == Some("Secret"))
        .map(|(_, _, d)| {
            (
                str_at(d, &["metadata", "namespace"]).unwrap().to_string(),
                str_at(d, &["metadata", "name"]).unwrap().to_string(),
            )
        })
        .collect();
    for (path, _, doc) in all_documents(&files) {
        let (Some(values), Some(ns)) =
            (values_of(&doc), str_at(&doc, &["spec", "targetNamespace"]))
        else {
            continue;
        };
        let mut names = Vec::new();
        secret_references(&values, "", &mut names);
        for name in names {
            assert!(
                rendered.contains(&(ns.to_string(), name.clone())),
                "{}: references Secret {ns}/{name}, which piimg does not render",
                path.display()
            );
        }
    }
}

/// Secret names the chart values point at.
fn secret_references(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) if matches!(key, "existingSecret" | "superuserSecret") => {
            out.push(s.clone())
        }
        Value::Mapping(map) => {
            if matches!(
                key,
                "existingSecret"
                    | "existingAdminSecret"
                    | "existingDatabaseSecret"
                    | "secretKeyRef"
                    | "passwordSecret"
                    | "secret"
            ) {
                if let Some(name) = v.get("name").and_then(Value::as_str) {
                    out.push(name.to_string());
                }
            }
            for (k, child) in map {
                secret_references(child, k.as_str().unwrap_or(""), out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|i| secret_references(i, key, out)),
        _ => {}
    }
}

#[test]
fn services_turned_off_are_absent() {
    let mut services = ServiceSelection::all();
    for off in [
        Service::Ray,
        Service::Dask,
        Service::OtelCollector,
        Service::Mlflow,
    ] {
        services.set(off, false);
    }
    let files = render_example(&services);
    let off = ["ray", "dask", "otel-collector", "mlflow"];
    for file in &files {
        let top = file
            .rel_path
            .iter()
            .next()
            .and_then(|c| c.to_str())
            .unwrap_or("");
        assert!(
            !off.contains(&top),
            "{}: belongs to a service that is off",
            file.rel_path.display()
        );
    }
    for (path, _, doc) in all_documents(&files) {
        for field in [
            &["metadata", "name"][..],
            &["metadata", "namespace"],
            &["spec", "targetNamespace"],
        ] {
            if let Some(name) = str_at(&doc, field) {
                assert!(
                    !off.contains(&name),
                    "{}: {} is {name}, a service that is off",
                    path.display(),
                    field.join(".")
                );
            }
        }
    }
    assert!(
        files.iter().any(|f| f.rel_path.starts_with("minio")),
        "minio stays on"
    );
    // MinIO still provisions the `mlflow` user, so its Secret stays (issue 14.2).
    assert!(
        all_documents(&files)
            .iter()
            .any(|(_, _, d)| str_at(d, &["metadata", "name"]) == Some("minio-mlflow-user")),
        "minio.yaml's user Secret is rendered with MLflow off"
    );
}

#[test]
fn a_service_on_whose_dependency_is_off_is_refused() {
    let mut services = ServiceSelection::all();
    services.postgresql = false;
    let err = render(&manifests_dir(), &example_values(), &services, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("postgresql") && err.contains("[services]"),
        "{err}"
    );
}

#[test]
fn unknown_template_variable_is_an_error_naming_file_line_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("namespaces.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels:\n    host: a.${domian}\n",
    )
    .unwrap();
    let none = none_selected();
    let err = render(dir.path(), &example_values(), &none, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("namespaces.yaml"), "{err}");
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("${domian}"), "{err}");
}

fn none_selected() -> ServiceSelection {
    let mut none = ServiceSelection::all();
    for s in Service::ALL {
        none.set(s, false);
    }
    none
}

#[test]
fn a_profile_manifests_folder_is_added_with_its_own_variables() {
    let extra = tempfile::tempdir().unwrap();
    let folder = extra.path().join("lab-extras");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("lab-greeting.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: default\ndata:\n  text: ${greeting} from ${domain}\n",
    )
    .unwrap();
    let mut values = example_values();
    values.vars.insert("greeting".into(), "hello".into());
    let files = render(
        &manifests_dir(),
        &values,
        &ServiceSelection::all(),
        std::slice::from_ref(&folder),
    )
    .unwrap();
    let added = files
        .iter()
        .find(|f| f.rel_path == Path::new("lab-extras/lab-greeting.yaml"))
        .expect("profile file staged");
    assert!(String::from_utf8_lossy(&added.bytes).contains("hello from lab.example"));
    assert!(!added.secret);
}

#[test]
fn rendering_is_deterministic() {
    let a = render_example(&ServiceSelection::all());
    let b = render_example(&ServiceSelection::all());
    assert_eq!(a, b);
    assert!(a.iter().any(|f| f.secret) && a.iter().any(|f| !f.secret));
}

/// Plain Kubernetes objects (core and `*.k8s.io` groups, which include our Namespaces and
/// Secrets) against the official OpenAPI schemas, strictly (unknown fields are errors).
#[test]
fn plain_kubernetes_objects_match_the_official_schemas() {
    let creds = example_credentials();
    let files = render_example(&ServiceSelection::all());
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (index, (path, _, doc)) in all_documents(&files).into_iter().enumerate() {
        let api = str_at(&doc, &["apiVersion"]).unwrap_or_default();
        let group = api.split_once('/').map_or("", |(g, _)| g);
        if !(group.is_empty() || group.ends_with(".k8s.io") || !group.contains('.')) {
            continue; // a CRD such as HelmChart: checked field by field above
        }
        let out = dir.path().join(format!(
            "{index:03}-{}.yaml",
            path.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::write(&out, serde_norway::to_string(&doc).unwrap()).unwrap();
        paths.push(out);
    }
    assert!(
        paths.len() >= 9,
        "expected Namespaces and Secrets to validate, found {}",
        paths.len()
    );
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(&paths)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `kubernetes-validate` ({e}): install the offline Kubernetes schema validator with `{VALIDATOR_INSTALL}`")
        });
    let mut report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for value in creds.values() {
        report = report.replace(value, "<redacted>");
    }
    assert!(
        output.status.success(),
        "objects do not match the Kubernetes {KUBERNETES_VERSION} schemas:\n{report}"
    );
    assert!(
        !report.contains("WARN"),
        "the validator could not check every object:\n{report}"
    );
    assert_eq!(
        report.matches("INFO").count(),
        paths.len(),
        "every object validated:\n{report}"
    );
}

#[test]
fn layout_mistakes_are_refused_with_the_file_named() {
    let none = none_selected();
    // A folder that is not a service.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("grafana")).unwrap();
    let err = render(dir.path(), &example_values(), &none, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grafana") && err.contains("not a service folder"),
        "{err}"
    );
    // A stray non-YAML file; Markdown is documentation and passes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "docs").unwrap();
    assert!(render(dir.path(), &example_values(), &none, &[])
        .unwrap()
        .is_empty());
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let err = render(dir.path(), &example_values(), &none, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.txt"), "{err}");
    // Two files k3s would merge into one addon.
    let dir = tempfile::tempdir().unwrap();
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\n";
    std::fs::write(dir.path().join("same.yaml"), doc).unwrap();
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("same.yml"), doc).unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::rename(dir.path().join("same.yaml"), base.join("same.yaml")).unwrap();
    let err = render(&base, &example_values(), &none, &[extra])
        .unwrap_err()
        .to_string();
    assert!(err.contains("same") && err.contains("addon"), "{err}");
    // Issue 13.8: a file named like a k3s packaged component, at the top or in a folder: k3s
    // rewrites `traefik.yaml` at every start and names addons by file name alone.
    for name in [
        "traefik.yaml",
        "sub/coredns.yml",
        "local-storage.extra.yaml",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let extra = dir.path().join("own");
        let file = extra.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, doc).unwrap();
        let err = render(&base, &example_values(), &none, &[extra])
            .unwrap_err()
            .to_string();
        let addon = name.rsplit('/').next().unwrap().split('.').next().unwrap();
        assert!(
            err.contains(&format!("`{addon}`"))
                && err.contains("packaged")
                && err.contains("rename"),
            "{name}: {err}"
        );
    }
    // An enabled service without its folder.
    let mut only_dask = none_selected();
    only_dask.dask = true;
    let err = render(&base, &example_values(), &only_dask, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("dask") && err.contains("[services]"), "{err}");
}

/// Every image a pinned chart runs with our values, init containers, sidecars, hook jobs and
/// the pods it spawns (JupyterHub's user pods, CloudNativePG's instances) included: the
/// platforms it is published for, read in the project's own build or release files, the
/// values key of the node selector of the pod it runs in, and how its digest is pinned.
/// manifests/README.md ("Images: platforms and digests") records the same facts with their
/// sources; a chart whose images are not all here fails
/// `every_chart_runs_only_images_on_record`.
struct ChartImage {
    /// `spec.chart` of the HelmChart that runs it.
    chart: &'static str,
    /// `repository:tag` as the chart renders it with our values.
    image: &'static str,
    /// The pod or container it is, for messages.
    workload: &'static str,
    /// Linux platforms it is published for; empty: not established (then its pod must be kept
    /// on the amd64 control plane).
    platforms: &'static [&'static str],
    /// Repository, tag (or commit) and file the platforms were read in.
    platforms_source: &'static str,
    /// Values path of the `nodeSelector` map of its pod.
    node_selector: &'static [&'static str],
    /// How its digest is pinned.
    digest: Pin,
}

/// How an image's digest is pinned.
enum Pin {
    /// The values of `chart` at `path` hold `value` exactly, in the form that chart's template
    /// composes (`tag@sha256:…`, `sha256:…` or the bare hex): the multi-platform index digest,
    /// seen in at least two independent public sources (manifests/README.md).
    At {
        chart: &'static str,
        path: &'static [&'static str],
        value: &'static str,
    },
    /// The chart's own default carries the digest; nothing of ours overrides it.
    ByChart(&'static str),
    /// Tag only; why no digest is pinned.
    No(&'static str),
}

const PLATFORMS_MINIO: &[&str] = &["linux/amd64", "linux/arm64", "linux/ppc64le"];
const PLATFORMS_AMD64_ARM64: &[&str] = &["linux/amd64", "linux/arm64"];
const PLATFORMS_PROMETHEUS_OPERATOR: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm",
    "linux/ppc64le",
    "linux/s390x",
];
const PLATFORMS_BUSYBOX: &[&str] = &[
    "linux/amd64",
    "linux/arm/v5",
    "linux/arm/v6",
    "linux/arm/v7",
    "linux/arm64",
    "linux/386",
    "linux/ppc64le",
    "linux/riscv64",
    "linux/s390x",
];
const PLATFORMS_K8S_SIDECAR: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/ppc64le",
    "linux/riscv64",
];
const SOURCE_BUSYBOX: &str = "docker-library/official-images @ 37079fb336 (2026-08-21) library/busybox: \
     tag 1.38.0, Architectures amd64, arm32v5, arm32v7, arm64v8, i386, ppc64le, riscv64, s390x, arm32v6";
const SOURCE_JUPYTERHUB: &str =
    "jupyterhub/zero-to-jupyterhub-k8s @ 4.4.0 (5c5f5df75) ci/publish: \
     chartpress --builder docker-buildx --platform linux/amd64 --platform linux/arm64 for the \
     images of chartpress.yaml (hub, network-tools, singleuser-sample, …)";
const SOURCE_K8S_SIDECAR: &str = "kiwigrid/k8s-sidecar @ 2.10.1 (a61c7ac) docker-bake.hcl target \
     k8s-sidecar, baked for docker.io, quay.io and ghcr.io by .github/workflows/release.yaml";
const SOURCE_PROMETHEUS_OPERATOR: &str = "prometheus-operator/prometheus-operator \
     scripts/push-docker-image.sh CPU_ARCHS=\"amd64 arm64 arm ppc64le s390x\" at v0.91.0 and \
     v0.93.0 (v0.93.1 is not in the snapshot; release-0.93 ends at f8fafd475, 2026-07-28)";
const NOT_READ_ON_CONTROL_PLANE: &str =
    "not read (its pod is kept on the amd64 control plane either way)";
/// busybox:1.38.0's index digest as docker-library/repo-info records it (repos/busybox/remote/
/// 1.38.0.md @ 01a7054: an OCI image index, linux/arm64/v8 among its platforms). The official
/// image is rebuilt under its tag, so this is one build of 1.38.0 (the index of 2026-08-01),
/// not necessarily what the tag names today: manifests/README.md.
const BUSYBOX_DIGEST: &str = "dc2d74b28e4cf8984fa52af1f39bc7c3d9c73760b41a74d629f5d11b1ab28616";
/// The same, as a tag for charts that compose `repository:tag`.
const BUSYBOX_PINNED: &str =
    "1.38.0@sha256:dc2d74b28e4cf8984fa52af1f39bc7c3d9c73760b41a74d629f5d11b1ab28616";
const WHY_JUPYTERHUB: &str = "no public pin of the 4.4.0 images: find_string finds \
     `k8s-hub:4.4.0` only tag-only (no `k8s-hub:4.4.0@`, `tag: 4.4.0@sha256`; `k8s-hub@sha256` \
     only 4.4.2's), and `k8s-singleuser-sample:4.4.0` and \
     `k8s-network-tools:4.4.0` not at all; the chart at 4.4.0 writes `set-by-chartpress` tags \
     and no digest";
const WHY_RAY: &str = "no public pin: find_string finds `2.41.0-aarch64` only as a tag \
     (`--set image.tag=2.41.0-aarch64` in guides), no `ray:2.41.0-aarch64@`; Docker Hub is not \
     reachable";
const WHY_CHP: &str = "no public pin of 5.2.0: find_string finds \
     `configurable-http-proxy:5.2.0` only tag-only (no `:5.2.0@`, `tag: \"5.2.0@sha256`; \
     `configurable-http-proxy@sha256` only an old jupyter/ image); z2jh 4.4.0 values give the \
     tag alone";
/// k8s-sidecar 2.10.1's index digest (one bake push to docker.io and quay.io: the same index).
const K8S_SIDECAR_DIGEST: &str = "7eac5c4fed714a18d038fc9fea57d8744d113367935dac0ea4eb6a87cef704a3";

const CHART_IMAGES: &[ChartImage] = &[
    ChartImage {
        chart: "minio",
        image: "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
        workload: "MinIO server",
        platforms: PLATFORMS_MINIO,
        platforms_source: "minio/minio @ RELEASE.2025-09-07T16-13-09Z (07c3a429b) docker-buildx.sh: \
             --platform=linux/arm64,linux/amd64,linux/ppc64le",
        node_selector: &["nodeSelector"],
        digest: Pin::At {
            chart: "minio",
            path: &["image", "tag"],
            value: "RELEASE.2025-09-07T16-13-09Z@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e",
        },
    },
    ChartImage {
        chart: "minio",
        image: "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z",
        workload: "post-install job (bucket, user, policy)",
        platforms: PLATFORMS_MINIO,
        platforms_source: "minio/mc @ RELEASE.2025-08-13T08-35-41Z (7394ce0d) docker-buildx.sh: \
             --platform=linux/arm64,linux/amd64,linux/ppc64le",
        // minio 5.4.0 templates/post-job.yaml writes `postJob.nodeSelector`, and only when
        // the top-level `nodeSelector` is set.
        node_selector: &["postJob", "nodeSelector"],
        digest: Pin::At {
            chart: "minio",
            path: &["mcImage", "tag"],
            value: "RELEASE.2025-08-13T08-35-41Z@sha256:a7fe349ef4bd8521fb8497f55c6042871b2ae640607cf99d9bede5e9bdf11727",
        },
    },
    ChartImage {
        chart: "cloudnative-pg",
        image: "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0",
        workload: "CloudNativePG operator",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "cloudnative-pg/cloudnative-pg @ v1.30.0 (4b5e244a7) docker-bake.hcl target \
             default, and .github/workflows/release-publish.yml PLATFORMS",
        node_selector: &["nodeSelector"],
        digest: Pin::At {
            chart: "cloudnative-pg",
            path: &["image", "tag"],
            value: "1.30.0@sha256:a2701eb97cdd2a34b1fdb2cb51987f544b706e40bec72ae7146cd8580efefebb",
        },
    },
    ChartImage {
        chart: "cluster",
        image: "ghcr.io/cloudnative-pg/postgresql:16.15-202608170814-standard-bookworm",
        workload: "PostgreSQL instance",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "cloudnative-pg/postgres-containers @ 75660d85 (2026-08-17) docker-bake.hcl platforms",
        node_selector: &["cluster", "affinity", "nodeSelector"],
        digest: Pin::At {
            chart: "cluster",
            path: &["cluster", "imageName"],
            value: "ghcr.io/cloudnative-pg/postgresql:16.15-202608170814-standard-bookworm@sha256:0d51ec3786f2b3c7022756c32e04cc5d575f4666c51599ef5b08552529bfac6d",
        },
    },
    ChartImage {
        chart: "cluster",
        image: "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0",
        workload: "PostgreSQL instance's bootstrap-controller init container (the operator's own \
             image, cloudnative-pg v1.30.0 pkg/specs/containers.go; OPERATOR_IMAGE_NAME)",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "as the operator",
        node_selector: &["cluster", "affinity", "nodeSelector"],
        digest: Pin::At {
            chart: "cloudnative-pg",
            path: &["image", "tag"],
            value: "1.30.0@sha256:a2701eb97cdd2a34b1fdb2cb51987f544b706e40bec72ae7146cd8580efefebb",
        },
    },
    ChartImage {
        chart: "mlflow",
        image: "burakince/mlflow:3.15.1",
        workload: "MLflow server and its mlflow-db-migration init container",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "burakince/mlflow @ 3.15.1 (9820281) .github/workflows/docker-publish.yml \
             `Build and push Docker image`: linux/arm64/v8,linux/amd64 on tags",
        node_selector: &["nodeSelector"],
        digest: Pin::No(
            "no public pin of 3.15.1: find_string finds `mlflow:3.15.1` only tag-only \
             (`mlflow:3.15.1@`: none; `burakince/mlflow@sha256`: only 3.14.0's, from a pod's \
             Image ID); burakince/mlflow @ 3.15.1 records no image digest",
        ),
    },
    // mlflow 1.11.5 templates/deployment.yaml composes each init image as `repository:tag`,
    // one values key each, so one entry each.
    ChartImage {
        chart: "mlflow",
        image: "busybox:1.38.0",
        workload: "dbchecker init container",
        platforms: PLATFORMS_BUSYBOX,
        platforms_source: SOURCE_BUSYBOX,
        node_selector: &["nodeSelector"],
        digest: Pin::At {
            chart: "mlflow",
            path: &["initImages", "dbchecker", "tag"],
            value: BUSYBOX_PINNED,
        },
    },
    ChartImage {
        chart: "mlflow",
        image: "busybox:1.38.0",
        workload: "ini-file-initializer init container",
        platforms: PLATFORMS_BUSYBOX,
        platforms_source: SOURCE_BUSYBOX,
        node_selector: &["nodeSelector"],
        digest: Pin::At {
            chart: "mlflow",
            path: &["initImages", "iniFileInitializer", "tag"],
            value: BUSYBOX_PINNED,
        },
    },
    ChartImage {
        chart: "jupyterhub",
        image: "quay.io/jupyterhub/k8s-hub:4.4.0",
        workload: "hub",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: SOURCE_JUPYTERHUB,
        node_selector: &["hub", "nodeSelector"],
        digest: Pin::No(WHY_JUPYTERHUB),
    },
    ChartImage {
        chart: "jupyterhub",
        image: "quay.io/jupyterhub/configurable-http-proxy:5.2.0",
        workload: "proxy (CHP)",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "jupyterhub/configurable-http-proxy @ 5.2.0 (da6e57a) \
             .github/workflows/publish.yml: platforms linux/amd64,linux/arm64",
        node_selector: &["proxy", "chp", "nodeSelector"],
        digest: Pin::No(WHY_CHP),
    },
    ChartImage {
        chart: "jupyterhub",
        image: "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
        workload: "user pods (KubeSpawner, node_selector from singleuser.nodeSelector)",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: SOURCE_JUPYTERHUB,
        node_selector: &["singleuser", "nodeSelector"],
        digest: Pin::No(WHY_JUPYTERHUB),
    },
    ChartImage {
        chart: "jupyterhub",
        image: "quay.io/jupyterhub/k8s-network-tools:4.4.0",
        workload: "user pods' block-cloud-metadata init container",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: SOURCE_JUPYTERHUB,
        node_selector: &["singleuser", "nodeSelector"],
        digest: Pin::No(WHY_JUPYTERHUB),
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus-operator/prometheus-operator:v0.93.1",
        workload: "Prometheus operator",
        platforms: PLATFORMS_PROMETHEUS_OPERATOR,
        platforms_source: SOURCE_PROMETHEUS_OPERATOR,
        node_selector: &["prometheusOperator", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["prometheusOperator", "image", "sha"],
            value: "e52bb28fd41c98dd407c7a8cba8bdcfe7eabd7447e250afaf1fe7bb816dedbff",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
        workload: "config-reloader sidecar the operator adds to Prometheus",
        platforms: PLATFORMS_PROMETHEUS_OPERATOR,
        platforms_source: SOURCE_PROMETHEUS_OPERATOR,
        node_selector: &["prometheus", "prometheusSpec", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["prometheusOperator", "prometheusConfigReloader", "image", "sha"],
            value: "428f088fe6fe07ab138bda92113664b04848a1dc408e4d3680a60ecdb55d1a65",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
        workload: "config-reloader sidecar the operator adds to Alertmanager",
        platforms: PLATFORMS_PROMETHEUS_OPERATOR,
        platforms_source: SOURCE_PROMETHEUS_OPERATOR,
        node_selector: &["alertmanager", "alertmanagerSpec", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["prometheusOperator", "prometheusConfigReloader", "image", "sha"],
            value: "428f088fe6fe07ab138bda92113664b04848a1dc408e4d3680a60ecdb55d1a65",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus/prometheus:v3.14.0-distroless",
        workload: "Prometheus",
        platforms: &[],
        platforms_source: NOT_READ_ON_CONTROL_PLANE,
        node_selector: &["prometheus", "prometheusSpec", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["prometheus", "prometheusSpec", "image", "sha"],
            value: "50c707e96da5ade383cb1707790576480485e93de06aa60ad8802cb5f744bd0a",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus/alertmanager:v0.34.0",
        workload: "Alertmanager",
        platforms: &[],
        platforms_source: NOT_READ_ON_CONTROL_PLANE,
        node_selector: &["alertmanager", "alertmanagerSpec", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["alertmanager", "alertmanagerSpec", "image", "sha"],
            value: "690c7b525f4367aa91f73e2f91c632206d32e97c6384bdbf2fb7a861b420340d",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7",
        workload: "admission webhook create/patch hook jobs",
        platforms: &[],
        platforms_source: "not read at 1.8.7: the snapshot of jkroepke/kube-webhook-certgen ends \
             2025-12-26 after v1.7.3 (its .goreleaser.yaml then built linux/amd64, linux/arm64, linux/s390x)",
        node_selector: &["prometheusOperator", "admissionWebhooks", "patch", "nodeSelector"],
        digest: Pin::No(
            "no public pin of 1.8.7: find_string finds no `kube-webhook-certgen:1.8.7` nor \
             `:v1.8.7` at all (`jkroepke/kube-webhook-certgen@sha256`: only 1.8.3's); \
             kube-prometheus-stack 88.5.3 leaves `patch.image.sha` empty",
        ),
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "docker.io/grafana/grafana:13.2.0",
        workload: "Grafana",
        platforms: &[],
        platforms_source: NOT_READ_ON_CONTROL_PLANE,
        node_selector: &["grafana", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["grafana", "image", "sha"],
            value: "3fd54ae1214669f8355f065ec9f6445d5279a3d77095ab048ca045685272429b",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/kiwigrid/k8s-sidecar:2.10.1",
        workload: "Grafana's dashboard and data-source sidecars",
        platforms: PLATFORMS_K8S_SIDECAR,
        platforms_source: SOURCE_K8S_SIDECAR,
        node_selector: &["grafana", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["grafana", "sidecar", "image", "sha"],
            value: K8S_SIDECAR_DIGEST,
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "docker.io/library/busybox:1.38.0",
        workload: "Grafana's init-chown-data init container",
        platforms: PLATFORMS_BUSYBOX,
        platforms_source: SOURCE_BUSYBOX,
        node_selector: &["grafana", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["grafana", "initChownData", "image", "sha"],
            value: BUSYBOX_DIGEST,
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
        workload: "kube-state-metrics",
        platforms: &["linux/amd64", "linux/arm", "linux/arm64", "linux/ppc64le", "linux/s390x"],
        platforms_source: "kubernetes/kube-state-metrics @ v2.20.0 (4ffeda2e) Makefile ALL_ARCH and \
             push-multi-arch; cloudbuild.yaml runs `make push`",
        node_selector: &["kube-state-metrics", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["kube-state-metrics", "image", "sha"],
            value: "sha256:42cfe3723a5f058171c627537fb57a3ea0f26e4380fa18555a95cb1a1b4cfc5b",
        },
    },
    ChartImage {
        chart: "kube-prometheus-stack",
        image: "quay.io/prometheus/node-exporter:v1.12.1-distroless",
        workload: "node-exporter DaemonSet (every node)",
        platforms: &[
            "linux/amd64",
            "linux/arm64",
            "linux/arm/v7",
            "linux/ppc64le",
            "linux/riscv64",
            "linux/s390x",
        ],
        platforms_source: "prometheus/node_exporter @ v1.12.1 (6044da78) Makefile DOCKER_ARCHS; \
             Makefile.common common-docker-manifest for each Dockerfile variant (Dockerfile.distroless)",
        node_selector: &["prometheus-node-exporter", "nodeSelector"],
        digest: Pin::At {
            chart: "kube-prometheus-stack",
            path: &["prometheus-node-exporter", "image", "digest"],
            value: "sha256:8c9bac11973b94b59be88d6e11fee4429aa743c8846cdc75d65b18db33f6a106",
        },
    },
    ChartImage {
        chart: "dask-kubernetes-operator",
        image: "ghcr.io/dask/dask-kubernetes-operator:2025.4.3",
        workload: "Dask operator",
        platforms: &["linux/amd64"],
        platforms_source: "dask/dask-kubernetes#919, dask/helm-chart#432 (\"exec format error\" on \
             arm64); dask-kubernetes .github/workflows/release.yml at 2025.4.3 runs chartpress \
             without --platform",
        node_selector: &["nodeSelector"],
        digest: Pin::No(
            "no public pin of 2025.4.3: find_string finds `dask-kubernetes-operator:2025.4.3` \
             once, tag-only (a Dockerfile FROM), and no `dask-kubernetes-operator@sha256`; the \
             chart at 2025.4.3 writes a `set-by-chartpress` tag and no digest",
        ),
    },
    ChartImage {
        chart: "kuberay-operator",
        image: "quay.io/kuberay/operator:v1.7.0",
        workload: "KubeRay operator",
        platforms: PLATFORMS_AMD64_ARM64,
        platforms_source: "ray-project/kuberay @ v1.7.0 (59d663aee) .github/workflows/image-release.yaml \
             release_operator_image: platforms linux/amd64,linux/arm64",
        node_selector: &["nodeSelector"],
        digest: Pin::No(
            "one public pin only: 4a779237… in one project's script and its notes (ids \
             58010281161, 58363021868, same KubeRay source commit); no other \
             `kuberay/operator:v1.7.0` or `kuberay/operator@sha256` of v1.7.0 in the code index, \
             no digest in kuberay v1.7.0's helm-chart values; two independent sources are \
             required",
        ),
    },
    ChartImage {
        chart: "ray-cluster",
        image: "rayproject/ray:2.41.0-aarch64",
        workload: "Ray head",
        platforms: &["linux/arm64"],
        platforms_source: "ray-project/ray ci/ray_ci/docker_container.py (at 0178d7f67 in the code \
             index, not at the ray-2.41.0 tag): architecture aarch64 adds the `-aarch64` suffix \
             and builds in forge-aarch64",
        node_selector: &["head", "nodeSelector"],
        digest: Pin::No(WHY_RAY),
    },
    ChartImage {
        chart: "ray-cluster",
        image: "rayproject/ray:2.41.0-aarch64",
        workload: "Ray workers",
        platforms: &["linux/arm64"],
        platforms_source: "as the head",
        node_selector: &["worker", "nodeSelector"],
        digest: Pin::No(WHY_RAY),
    },
    ChartImage {
        chart: "jaeger",
        image: "jaegertracing/jaeger:2.19.0",
        workload: "Jaeger all-in-one",
        platforms: &["linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le"],
        platforms_source: "jaegertracing/jaeger @ v2.19.0 (48f1e4612) Makefile PLATFORMS (linux part: \
             LINUX_PLATFORMS); scripts/build/build-all-in-one-image.sh builds them all, run by \
             .github/workflows/ci-release.yml",
        node_selector: &["jaeger", "nodeSelector"],
        digest: Pin::At {
            chart: "jaeger",
            path: &["jaeger", "image", "tag"],
            value: "2.19.0@sha256:ede4864215be4cd85bd8c3129a2fea6c5713c5653c7282c429dba123014bc68b",
        },
    },
    ChartImage {
        chart: "opentelemetry-collector",
        image: "otel/opentelemetry-collector-contrib:0.158.0",
        workload: "OpenTelemetry Collector",
        platforms: &[
            "linux/386",
            "linux/amd64",
            "linux/arm/v7",
            "linux/arm64",
            "linux/ppc64le",
            "linux/riscv64",
            "linux/s390x",
        ],
        platforms_source: "open-telemetry/opentelemetry-collector-releases @ v0.158.0 (1400269f) \
             distributions/otelcol-contrib/.goreleaser.yaml docker_manifests",
        node_selector: &["nodeSelector"],
        digest: Pin::At {
            chart: "opentelemetry-collector",
            path: &["image", "tag"],
            value: "0.158.0@sha256:c5918f78992ee73b0d6f0e599423ac5ec52dd5d9726733114d6eca53d5a32ed5",
        },
    },
    ChartImage {
        chart: "loki",
        image: "docker.io/grafana/loki:3.7.6",
        workload: "Loki (single binary)",
        platforms: &["linux/amd64", "linux/arm64", "linux/arm"],
        platforms_source: "grafana/loki @ v3.7.6 .github/release-workflows.jsonnet: imageJobs.loki on platforms.all",
        node_selector: &["singleBinary", "nodeSelector"],
        digest: Pin::At {
            chart: "loki",
            path: &["loki", "image", "tag"],
            value: "3.7.6@sha256:efd47c67f9bac88ca29bcf8cb997d9ab29d1848bd0aff579282295542a745952",
        },
    },
    ChartImage {
        chart: "loki",
        image: "docker.io/kiwigrid/k8s-sidecar:2.10.1",
        workload: "Loki's rules sidecar",
        platforms: PLATFORMS_K8S_SIDECAR,
        platforms_source: SOURCE_K8S_SIDECAR,
        node_selector: &["singleBinary", "nodeSelector"],
        digest: Pin::At {
            chart: "loki",
            path: &["sidecar", "image", "tag"],
            value: "2.10.1@sha256:7eac5c4fed714a18d038fc9fea57d8744d113367935dac0ea4eb6a87cef704a3",
        },
    },
    ChartImage {
        chart: "alloy",
        image: "docker.io/grafana/alloy:v1.18.1",
        workload: "Alloy DaemonSet (every node)",
        platforms: &["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"],
        platforms_source: "grafana/alloy @ v1.18.1 scripts/docker-containers: BUILD_PLATFORMS",
        node_selector: &["controller", "nodeSelector"],
        // alloy 1.11.1 builds its `app.kubernetes.io/version` label from the image id
        // (templates/_helpers.tpl), so a `tag@sha256:…` tag would be an invalid label value:
        // the digest goes in `image.digest` and the image renders as `grafana/alloy@sha256:…`.
        digest: Pin::At {
            chart: "alloy",
            path: &["image", "digest"],
            value: "sha256:0f4434c92b3e6cdac38bb129b344e1790c246f7b6e2eaffcc16a5fa363240e33",
        },
    },
    ChartImage {
        chart: "alloy",
        image: "quay.io/prometheus-operator/prometheus-config-reloader:v0.91.0",
        workload: "Alloy's config-reloader sidecar",
        platforms: PLATFORMS_PROMETHEUS_OPERATOR,
        platforms_source: "prometheus-operator/prometheus-operator @ v0.91.0 (e138807d6) \
             scripts/push-docker-image.sh CPU_ARCHS",
        node_selector: &["controller", "nodeSelector"],
        digest: Pin::ByChart(
            "alloy 1.11.1 values.yaml configReloader.image.tag is \
             v0.91.0@sha256:7d9e4eea5f1139e602508871f422b0116c60e87c662f3dcd234d5ab60cd0d8c1",
        ),
    },
];

/// manifests/README.md records what `CHART_IMAGES` holds, with the sources: every image on
/// record is in its "Images: platforms and digests" table, with the start of its digest where
/// one is pinned, so the two cannot drift apart.
#[test]
fn every_image_on_record_is_in_the_readme() {
    let readme = std::fs::read_to_string(manifests_dir().join("README.md")).unwrap();
    let section = readme
        .split("## Images: platforms and digests")
        .nth(1)
        .expect("manifests/README.md: no `## Images: platforms and digests` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    for entry in CHART_IMAGES {
        let row = section
            .lines()
            .filter(|l| l.starts_with(&format!("| `{}` |", entry.chart)))
            .find(|l| l.contains(&format!("`{}`", entry.image)))
            .unwrap_or_else(|| {
                panic!(
                    "manifests/README.md: no row for chart {} image {} in `Images: platforms and digests`",
                    entry.chart, entry.image
                )
            });
        if let Pin::At { value, .. } = entry.digest {
            let hex = value.rsplit(':').next().unwrap_or(value);
            assert!(
                row.contains(&format!("`{}…`", &hex[..8])),
                "manifests/README.md: the row of {} does not name its digest {}…",
                entry.image,
                &hex[..8]
            );
        }
    }
}

/// The node a pod may land on, from the `kubernetes.io/arch` of its node selector: `None`
/// when it has none (any node: the arm64 Pis or the amd64 control plane).
fn selected_arch<'a>(values: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = values;
    for key in path {
        v = v.get(key)?;
    }
    v.get("kubernetes.io/arch").and_then(Value::as_str)
}

/// Issue 14: no workload with an amd64-only image, or an image whose platforms are not on
/// record, can be scheduled on an arm64 Pi: a pod without an arch selector needs an image
/// published for linux/amd64 and linux/arm64; a pod with one needs its image published for
/// that arch; an image whose platforms could not be established is kept on the amd64 control
/// plane.
#[test]
fn workloads_with_amd64_only_images_are_kept_on_amd64_nodes() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let mut problems = Vec::new();
    for entry in CHART_IMAGES {
        let values = chart_values(&docs, entry.chart);
        let arch = selected_arch(&values, entry.node_selector);
        let published = |a: &str| entry.platforms.contains(&format!("linux/{a}").as_str());
        let ok = match (entry.platforms.is_empty(), arch) {
            (true, Some("amd64")) => true,
            (true, _) => false,
            (false, None) => published("amd64") && published("arm64"),
            (false, Some(a)) => published(a),
        };
        if !ok {
            problems.push(format!(
                "chart {}: {} ({}) is published for {} ({}), but its pod's `{}` selects {}: set `{}: {{kubernetes.io/arch: amd64}}`",
                entry.chart,
                entry.image,
                entry.workload,
                if entry.platforms.is_empty() {
                    "platforms not established".to_string()
                } else {
                    entry.platforms.join(", ")
                },
                entry.platforms_source,
                entry.node_selector.join("."),
                arch.map_or("any node, arm64 Pis included".to_string(), |a| format!("arch {a}")),
                entry.node_selector.join("."),
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every HelmChart's images are on record in [`CHART_IMAGES`], and an image the values name
/// directly is the one on record (same repository and tag), so swapping an image in the values
/// without checking its platforms and digest fails here.
#[test]
fn every_chart_runs_only_images_on_record() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let mut charts = BTreeSet::new();
    for (path, _, doc) in &docs {
        if str_at(doc, &["kind"]) != Some("HelmChart") {
            continue;
        }
        let chart = str_at(doc, &["spec", "chart"]).unwrap();
        charts.insert(chart.to_string());
        assert!(
            CHART_IMAGES.iter().any(|e| e.chart == chart),
            "{}: chart {chart} has no image on record in CHART_IMAGES (platforms, node selector, digest)",
            path.display()
        );
        let mut images = Vec::new();
        collect_images(
            &values_of(doc).unwrap_or(Value::Null),
            "",
            &mut images,
            path,
        );
        for (_, image) in images {
            let reference = image.split('@').next().unwrap_or(&image);
            assert!(
                CHART_IMAGES
                    .iter()
                    .any(|e| e.chart == chart && e.image == reference),
                "{}: chart {chart} runs {image}, which is not on record in CHART_IMAGES: read its platforms and digest first",
                path.display()
            );
        }
    }
    for entry in CHART_IMAGES {
        assert!(
            charts.contains(entry.chart),
            "CHART_IMAGES names chart {}, which no HelmChart installs",
            entry.chart
        );
    }
}

/// Every selection the reference test renders: all on, then each service off alone, with the
/// services that need it (turning off only `postgresql` is refused while `mlflow` is on).
fn selections_each_service_off_and_alone() -> Vec<(String, ServiceSelection)> {
    let mut out = vec![("all on".to_string(), ServiceSelection::all())];
    for service in Service::ALL {
        let mut sel = ServiceSelection::all();
        sel.set(service, false);
        // Turn off what (transitively) needs it.
        loop {
            let missing = sel.missing_dependencies();
            if missing.is_empty() {
                break;
            }
            for (user, _) in missing {
                sel.set(user, false);
            }
        }
        let off: Vec<&str> = Service::ALL
            .iter()
            .filter(|s| !sel.is_enabled(**s))
            .map(|s| s.name())
            .collect();
        out.push((format!("{} off", off.join(", ")), sel));
    }
    // Each service alone, with what it (transitively) needs.
    for service in Service::ALL {
        let mut sel = none_selected();
        sel.set(service, true);
        loop {
            let missing = sel.missing_dependencies();
            if missing.is_empty() {
                break;
            }
            for (_, needed) in missing {
                sel.set(needed, true);
            }
        }
        out.push((format!("only {service} (and what it needs)"), sel));
    }
    out
}

/// A reference from one object to a Secret, ConfigMap or PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    kind: &'static str,
    namespace: String,
    name: String,
}

/// References in a plain object's pod specs, or in a chart's values where the chart takes
/// the name of an object it does not create (`existingSecret`-style keys, per chart at its tag).
fn references(v: &Value, key: &str, namespace: &str, out: &mut Vec<Reference>) {
    let mut push = |kind: &'static str, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            out.push(Reference {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
    };
    let name = || v.get("name").and_then(Value::as_str);
    match v {
        Value::String(s) => match key {
            // minio `existingSecret`, `users[].existingSecret`; grafana `admin.existingSecret`;
            // cluster `cluster.superuserSecret`
            "existingSecret" | "superuserSecret" => push("Secret", Some(s)),
            // volumes[].secret.secretName
            "secretName" => push("Secret", Some(s)),
            // minio `persistence.existingClaim`, grafana `persistence.existingClaim`
            "existingClaim" | "claimName" => push("PersistentVolumeClaim", Some(s)),
            _ => {}
        },
        Value::Mapping(map) => {
            match key {
                // mlflow `auth.existingAdminSecret`, `backendStore.existingDatabaseSecret`,
                // `auth.postgres.existingSecret`, `artifactRoot.s3.existingSecret`;
                // cluster `initdb.secret`, `roles[].passwordSecret`; env and envFrom
                "existingSecret"
                | "existingAdminSecret"
                | "existingDatabaseSecret"
                | "secretKeyRef"
                | "secretRef"
                | "passwordSecret"
                | "secret" => push("Secret", name()),
                "configMapKeyRef" | "configMapRef" | "configMap" => push("ConfigMap", name()),
                _ => {}
            }
            if key == "secret" {
                push("Secret", v.get("secretName").and_then(Value::as_str));
            }
            if key == "persistentVolumeClaim" {
                push(
                    "PersistentVolumeClaim",
                    v.get("claimName").and_then(Value::as_str),
                );
            }
            for (k, child) in map {
                let k = k.as_str().unwrap_or("");
                if key == "secret" && k == "secretName" {
                    continue; // counted above
                }
                references(child, k, namespace, out);
            }
        }
        Value::Sequence(items) => items
            .iter()
            .for_each(|i| references(i, key, namespace, out)),
        _ => {}
    }
}

#[test]
fn every_referenced_secret_configmap_and_claim_is_rendered_for_each_service_off() {
    let mut checked = 0;
    for (label, services) in selections_each_service_off_and_alone() {
        let files = render_example(&services);
        let docs = all_documents(&files);
        let rendered: BTreeSet<(String, String, String)> = docs
            .iter()
            .filter_map(|(_, _, d)| {
                let kind = str_at(d, &["kind"])?;
                matches!(kind, "Secret" | "ConfigMap" | "PersistentVolumeClaim").then(|| {
                    (
                        kind.to_string(),
                        str_at(d, &["metadata", "namespace"])
                            .unwrap_or("default")
                            .to_string(),
                        str_at(d, &["metadata", "name"]).unwrap_or("").to_string(),
                    )
                })
            })
            .collect();
        for (path, _, doc) in &docs {
            let mut refs = Vec::new();
            if str_at(doc, &["kind"]) == Some("HelmChart") {
                let ns = str_at(doc, &["spec", "targetNamespace"]).unwrap_or("default");
                if let Some(values) = values_of(doc) {
                    references(&values, "", ns, &mut refs);
                }
            } else if !matches!(str_at(doc, &["kind"]), Some("Secret" | "ConfigMap")) {
                let ns = str_at(doc, &["metadata", "namespace"]).unwrap_or("default");
                if let Some(spec) = doc.get("spec") {
                    references(spec, "spec", ns, &mut refs);
                }
            }
            for r in refs {
                checked += 1;
                assert!(
                    rendered.contains(&(r.kind.to_string(), r.namespace.clone(), r.name.clone())),
                    "with {label}: {} references {} {}/{}, which is not rendered: render it whenever this file is, or drop the reference",
                    path.display(),
                    r.kind,
                    r.namespace,
                    r.name
                );
            }
        }
    }
    assert!(
        checked >= 40,
        "expected references to check, found {checked}"
    );
}

fn chart_values(docs: &[(PathBuf, bool, Value)], chart: &str) -> Value {
    docs.iter()
        .find(|(_, _, d)| {
            str_at(d, &["kind"]) == Some("HelmChart")
                && str_at(d, &["spec", "chart"]) == Some(chart)
        })
        .and_then(|(_, _, d)| values_of(d))
        .unwrap_or_else(|| panic!("no HelmChart for chart {chart}"))
}

/// Issue 14.3: with basic auth on and no `auth.postgres`, chart mlflow 1.11.5 writes
/// `database_uri = sqlite:///basic_auth.db` (templates/auth_ini_configmap.yaml), a relative
/// path under a read-only root: users and permissions are lost, or the server cannot start.
/// MLflow's auth store keeps its Alembic history in `alembic_version`, like the tracking
/// store (mlflow/server/auth/db/utils.py), so it gets a database of its own.
#[test]
fn mlflow_logins_live_in_postgresql_in_a_database_the_cluster_creates() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let mlflow = chart_values(&docs, "mlflow");
    let cluster = chart_values(&docs, "cluster");
    assert_eq!(mlflow["auth"]["enabled"].as_bool(), Some(true));
    assert_eq!(
        mlflow["auth"]["postgres"]["enabled"].as_bool(),
        Some(true),
        "mlflow/mlflow.yaml: auth.postgres.enabled must be true, or the chart keeps logins in sqlite:///basic_auth.db"
    );
    assert_eq!(
        mlflow["auth"]["postgres"]["host"].as_str(),
        mlflow["backendStore"]["postgres"]["host"].as_str()
    );
    let tracking = mlflow["backendStore"]["postgres"]["database"]
        .as_str()
        .unwrap();
    let auth = mlflow["auth"]["postgres"]["database"].as_str().unwrap();
    assert_ne!(tracking, auth, "the auth store needs its own database");
    let created: Vec<&str> = cluster["databases"]
        .as_sequence()
        .map(|s| s.iter().filter_map(|d| d["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        cluster["cluster"]["initdb"]["database"].as_str(),
        Some(tracking)
    );
    assert!(
        created.contains(&auth),
        "postgresql/postgresql-cluster.yaml: `databases` does not create {auth}: {created:?}"
    );
}

/// Issue 14.4: chart minio 5.4.0 defaults `deploymentUpdate` to RollingUpdate with maxSurge
/// 100% (values.yaml; templates/deployment.yaml writes it as the Deployment's strategy), so an
/// upgrade starts a second server on the same ReadWriteOnce local-path volume.
#[test]
fn minio_upgrades_stop_the_old_server_first() {
    let files = render_example(&ServiceSelection::all());
    let minio = chart_values(&all_documents(&files), "minio");
    assert_eq!(minio["mode"].as_str(), Some("standalone"));
    assert_eq!(
        minio["deploymentUpdate"]["type"].as_str(),
        Some("Recreate"),
        "minio/minio.yaml: set deploymentUpdate.type: Recreate (one RWO volume, one server)"
    );
}

/// kube-prometheus-stack 88.5.3's own `prometheus-node-exporter.extraArgs` (values.yaml at
/// tag kube-prometheus-stack-88.5.3). Setting the list replaces it, so ours must repeat them,
/// or every container's overlay mount becomes a filesystem series (issue 14.5).
const KPS_NODE_EXPORTER_DEFAULT_ARGS: [&str; 2] = [
    "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run/containerd/.+|var/lib/docker/.+|var/lib/kubelet/.+)($|/)",
    "--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs|erofs)$",
];

#[test]
fn node_exporter_keeps_the_charts_filesystem_excludes() {
    let files = render_example(&ServiceSelection::all());
    let kps = chart_values(&all_documents(&files), "kube-prometheus-stack");
    let args: Vec<&str> = kps["prometheus-node-exporter"]["extraArgs"]
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for default in KPS_NODE_EXPORTER_DEFAULT_ARGS {
        assert!(
            args.contains(&default),
            "monitoring/kube-prometheus-stack.yaml: prometheus-node-exporter.extraArgs replaces the chart's list; add back `{default}`"
        );
    }
}

/// Values keys the pinned chart reads nowhere (checked against its templates at the tag):
/// helm ignores them silently, so setting one only pretends to configure something.
const DEAD_KEYS: &[(&str, &[&str], &str)] = &[(
    "jaeger",
    &["provisionDataStore"],
    "no template of jaeger 4.11.1 reads it; chart 4.x stores traces in memory by default",
)];

#[test]
fn no_values_key_the_chart_does_not_read() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    for (chart, path, why) in DEAD_KEYS {
        let values = chart_values(&docs, chart);
        let mut v = &values;
        for key in *path {
            v = v.get(key).unwrap_or(&Value::Null);
        }
        assert!(
            v.is_null(),
            "chart {chart}: `{}` is set but {why}: remove it",
            path.join(".")
        );
    }
}

/// Charts that build an image reference from a version when no image is given, with the values
/// key that must name the image (so the pinned-image checks see it).
const IMAGE_FROM_VERSION: &[(&str, &[&str], &str)] = &[
    (
        "cluster",
        &["cluster", "imageName"],
        "cluster 0.8.1 templates/_helpers.tpl builds ghcr.io/cloudnative-pg/postgresql:<version.postgresql>",
    ),
    (
        "opentelemetry-collector",
        &["image", "tag"],
        "opentelemetry-collector 0.170.0 defaults the tag to its appVersion",
    ),
];

/// The appVersion in each chart's Chart.yaml at the pinned tag, where we set the image tag.
const APP_VERSIONS: &[(&str, &[&str], &str)] =
    &[("opentelemetry-collector", &["image", "tag"], "0.158.0")];

/// The value at `path` of `values`.
fn value_at<'a>(values: &'a Value, path: &[&str]) -> &'a Value {
    let mut v = values;
    for key in path {
        v = v.get(key).unwrap_or(&Value::Null);
    }
    v
}

fn is_sha256_hex(d: &str) -> bool {
    d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Issue 14: every image is pinned by tag and digest, including those the charts build from a
/// tag of their own: images the values name carry `tag@sha256:…`, and every image of
/// [`CHART_IMAGES`] pinned by us has its digest at the values key its chart's template reads.
/// What stays tag-only is listed there with `Pin::No` and the reason (the allow-list).
#[test]
fn images_piimg_sets_carry_tag_and_digest() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    for (chart, path, why) in IMAGE_FROM_VERSION {
        let values = chart_values(&docs, chart);
        assert!(
            value_at(&values, path)
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "chart {chart}: set `{}`: {why}",
            path.join(".")
        );
    }
    for (chart, path, app_version) in APP_VERSIONS {
        let values = chart_values(&docs, chart);
        assert_eq!(
            value_at(&values, path)
                .as_str()
                .map(|t| t.split('@').next().unwrap_or(t)),
            Some(*app_version),
            "chart {chart}: `{}` should be the chart's appVersion {app_version}",
            path.join(".")
        );
    }
    let mut images = Vec::new();
    for (path, _, doc) in &docs {
        if let Some(values) = values_of(doc) {
            collect_images(&values, "", &mut images, path);
        }
    }
    for (path, image) in &images {
        let digest = image
            .split_once("@sha256:")
            .is_some_and(|(_, d)| is_sha256_hex(d));
        let reference = image.split('@').next().unwrap_or(image);
        let tagged = reference
            .rsplit('/')
            .next()
            .is_some_and(|last| last.split_once(':').is_some_and(|(_, t)| !t.is_empty()));
        let unpinned = CHART_IMAGES
            .iter()
            .any(|e| e.image == reference && matches!(e.digest, Pin::No(_)));
        assert!(
            tagged && (digest || unpinned),
            "{}: image `{image}` needs a tag and a published digest (`tag@sha256:…`)",
            path.display()
        );
        assert!(
            !(digest && unpinned),
            "{image} is pinned now: make its CHART_IMAGES entry `Pin::At`"
        );
    }
    let mut problems = Vec::new();
    for entry in CHART_IMAGES {
        let (chart, path, value) = match entry.digest {
            Pin::At { chart, path, value } => (chart, path, value),
            Pin::ByChart(pin) => {
                assert!(
                    pin.split_once("@sha256:")
                        .is_some_and(|(_, d)| is_sha256_hex(&d[..d.len().min(64)])),
                    "CHART_IMAGES: {} is said to be pinned by its chart, but `{pin}` names no digest",
                    entry.image
                );
                continue;
            }
            Pin::No(why) => {
                assert!(
                    !why.trim().is_empty(),
                    "CHART_IMAGES: {} is tag-only without a reason",
                    entry.image
                );
                continue;
            }
        };
        let hex = value.rsplit(':').next().unwrap_or(value);
        assert!(
            is_sha256_hex(hex),
            "CHART_IMAGES: {} has no sha256 digest in {value}",
            entry.image
        );
        if let Some((tag, _)) = value.split_once("@sha256:") {
            let reference = tag.rsplit_once(':').map_or(tag, |(_, t)| t);
            assert!(
                entry.image.ends_with(&format!(":{reference}")),
                "CHART_IMAGES: {} is pinned with tag {reference}",
                entry.image
            );
        }
        let values = chart_values(&docs, chart);
        let got = value_at(&values, path);
        if got.as_str() != Some(value) {
            problems.push(format!(
                "chart {chart}: {} ({}) is not pinned: set `{}: {value}` (got {got:?})",
                entry.image,
                entry.workload,
                path.join(".")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Containers a pinned chart gives no resources value of its own; each must be covered by a
/// values key we set or by its namespace's LimitRange defaults.
#[test]
fn containers_without_chart_resources_are_covered() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let kps = chart_values(&docs, "kube-prometheus-stack");
    let chown = &kps["grafana"]["initChownData"]["resources"];
    for part in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(
                !chown[part][what].is_null(),
                "monitoring/kube-prometheus-stack.yaml: grafana's init-chown-data has no {part}.{what}: set grafana.initChownData.resources"
            );
        }
    }
    // mlflow 1.11.5: dbchecker and ini-file-initializer take no resources value.
    let defaults = docs
        .iter()
        .find(|(_, _, d)| {
            str_at(d, &["kind"]) == Some("LimitRange")
                && str_at(d, &["metadata", "namespace"]) == Some("mlflow")
        })
        .map(|(_, _, d)| d.clone())
        .expect("namespaces.yaml: no LimitRange in namespace mlflow for MLflow's init containers");
    let limit = defaults["spec"]["limits"]
        .as_sequence()
        .and_then(|l| l.iter().find(|l| l["type"].as_str() == Some("Container")))
        .expect("a Container limit");
    for part in ["defaultRequest", "default"] {
        for what in ["cpu", "memory"] {
            assert!(
                !limit[part][what].is_null(),
                "LimitRange lacks {part}.{what}"
            );
        }
    }
}

/// Issue 14.7: MinIO is kept past its end of life on the condition that nothing outside the
/// cluster reaches it (README, "MinIO").
#[test]
fn end_of_life_minio_is_not_exposed() {
    let files = render_example(&ServiceSelection::all());
    let minio = chart_values(&all_documents(&files), "minio");
    for key in ["ingress", "consoleIngress"] {
        assert_eq!(
            minio[key]["enabled"].as_bool(),
            Some(false),
            "minio/minio.yaml: `{key}.enabled` must be false while MinIO runs an end-of-life release"
        );
    }
    assert_eq!(minio["service"]["type"].as_str(), Some("ClusterIP"));
}

/// Issue 14's "done when": every chart and version is recorded in manifests/README.md as
/// checked against its source at the tag; a version changed without that record fails here.
#[test]
fn every_chart_version_is_recorded_as_checked_in_the_readme() {
    let readme = std::fs::read_to_string(manifests_dir().join("README.md")).unwrap();
    let section = readme
        .split("## Charts checked against upstream")
        .nth(1)
        .expect("manifests/README.md: no `## Charts checked against upstream` section");
    // Up to the next section (`## Images: platforms and digests` has a table of its own).
    let section = section.split("\n## ").next().unwrap_or(section);
    assert!(
        section.contains("2026-12-03"),
        "the section names the date checked"
    );
    let rows: Vec<Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    let files = render_example(&ServiceSelection::all());
    let mut charts = 0;
    for (path, _, doc) in all_documents(&files) {
        if str_at(&doc, &["kind"]) != Some("HelmChart") {
            continue;
        }
        charts += 1;
        let chart = str_at(&doc, &["spec", "chart"]).unwrap();
        let version = doc["spec"]["version"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", doc["spec"]["version"]));
        assert!(
            rows.iter()
                .any(|r| r.get(1).map(String::as_str) == Some(&format!("`{chart}`"))
                    && r.get(2) == Some(&version)
                    && r.get(5).is_some_and(|keys| !keys.is_empty())),
            "{}: chart {chart} {version} is not recorded in manifests/README.md (`Charts checked against upstream`): check it at its tag and add a row",
            path.display()
        );
    }
    assert_eq!(rows.len(), charts, "one README row per HelmChart");
}

/// node-exporter metrics the "Cluster nodes" dashboard may use, each with where it comes from
/// on a Raspberry Pi 5; a metric outside this list has not been checked against a Pi 5.
const NODE_METRICS: &[(&str, &str)] = &[
    (
        "node_thermal_zone_temp",
        "thermal_zone collector; zone cpu-thermal, raspberrypi/linux bcm2712-ds.dtsi",
    ),
    (
        "node_hwmon_in_lcrit_alarm_volts",
        "hwmon collector; rpi_volt in0_lcrit_alarm, raspberrypi/linux drivers/hwmon/raspberrypi-hwmon.c",
    ),
    ("node_cpu_scaling_frequency_hertz", "cpufreq collector"),
    ("node_cpu_seconds_total", "cpu collector"),
    ("node_memory_MemAvailable_bytes", "meminfo collector"),
    ("node_memory_MemTotal_bytes", "meminfo collector"),
    ("node_filesystem_avail_bytes", "filesystem collector"),
    ("node_filesystem_size_bytes", "filesystem collector"),
    ("node_uname_info", "uname collector"),
];

#[test]
fn cluster_nodes_dashboard_has_a_row_per_node_from_checked_metrics() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let (_, _, cm) = docs
        .iter()
        .find(|(_, _, d)| {
            str_at(d, &["kind"]) == Some("ConfigMap")
                && str_at(d, &["metadata", "labels", "grafana_dashboard"]) == Some("1")
        })
        .expect("monitoring/: no ConfigMap labelled grafana_dashboard: \"1\"");
    assert_eq!(str_at(cm, &["metadata", "namespace"]), Some("monitoring"));
    let json = str_at(cm, &["data", "cluster-nodes.json"]).expect("cluster-nodes.json");
    let dash: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON parses");
    assert_eq!(dash["title"], "Cluster nodes");
    let panels = dash["panels"].as_array().unwrap();
    assert!(
        panels
            .iter()
            .any(|p| p["type"] == "row" && p["repeat"] == "node"),
        "a row repeated per node"
    );
    let mut exprs = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        // Metric names: identifiers starting with `node_`.
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("node_") {
                assert!(
                    NODE_METRICS.iter().any(|(m, _)| *m == word),
                    "dashboard uses {word}, which is not among the metrics checked for a Pi 5"
                );
            }
        }
    }
    for needed in [
        "node_thermal_zone_temp",
        "node_cpu_scaling_frequency_hertz",
        "node_hwmon_in_lcrit_alarm_volts",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needed)),
            "no panel uses {needed}"
        );
    }
}

/// The Grafana data-source ConfigMap (label `grafana_datasource: "1"`) whose data holds
/// `file`, in the example cluster rendered with `services`.
fn grafana_datasource(services: &ServiceSelection, file: &str) -> Option<(PathBuf, bool, Value)> {
    all_documents(&render_example(services))
        .into_iter()
        .find(|(_, _, d)| {
            str_at(d, &["kind"]) == Some("ConfigMap")
                && str_at(d, &["metadata", "labels", "grafana_datasource"]) == Some("1")
                && d["data"].get(file).is_some()
        })
}

#[test]
fn grafana_has_jaeger_as_a_data_source_only_while_jaeger_is_on() {
    let find = |services: &ServiceSelection| grafana_datasource(services, "jaeger.yaml");
    let (_, _, cm) = find(&ServiceSelection::all()).expect("a Grafana datasource ConfigMap");
    assert_eq!(str_at(&cm, &["metadata", "namespace"]), Some("monitoring"));
    let text = str_at(&cm, &["data", "jaeger.yaml"]).unwrap();
    let ds: Value = serde_norway::from_str(text).unwrap();
    let jaeger = &ds["datasources"][0];
    assert_eq!(jaeger["type"].as_str(), Some("jaeger"));
    assert_eq!(
        jaeger["url"].as_str(),
        Some("http://jaeger.jaeger.svc.cluster.local:16686")
    );
    let mut off = ServiceSelection::all();
    off.otel_collector = false;
    off.jaeger = false;
    assert!(find(&off).is_none(), "no Jaeger data source without Jaeger");
}

/// Issue 14, logs: Alloy must run on the arm64 Pis and the amd64 control plane alike, and see
/// both journal locations and the kubelet's pod logs (chart alloy 1.11.1: `alloy.mounts.varlog`
/// mounts the host's /var/log; anything else needs `controller.volumes.extra` plus
/// `alloy.mounts.extra`).
#[test]
fn alloy_runs_on_every_node_and_reads_the_journal_and_pod_logs() {
    let files = render_example(&ServiceSelection::all());
    let docs = all_documents(&files);
    let v = chart_values(&docs, "alloy");
    assert_eq!(v["controller"]["type"].as_str(), Some("daemonset"));
    // Nothing narrows it to one architecture or node.
    for key in ["nodeSelector", "affinity"] {
        let narrowed = &v["controller"][key];
        assert!(
            narrowed.is_null() || narrowed.as_mapping().is_some_and(|m| m.is_empty()),
            "alloy: controller.{key} keeps it off some nodes: {narrowed:?}"
        );
    }
    // Every taint tolerated (a tainted control plane still ships its journal).
    let tolerations = v["controller"]["tolerations"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t.get("key").is_none()),
        "alloy: tolerate every taint: {tolerations:?}"
    );
    // /var/log (journal and pods) from the host, and /run/log/journal.
    assert_eq!(v["alloy"]["mounts"]["varlog"].as_bool(), Some(true));
    let mounts = v["alloy"]["mounts"]["extra"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let run = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/run/log/journal"))
        .expect("alloy: /run/log/journal mounted");
    assert_eq!(run["readOnly"].as_bool(), Some(true));
    let name = run["name"].as_str().unwrap();
    let volumes = v["controller"]["volumes"]["extra"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert!(
        volumes.iter().any(|vol| vol["name"].as_str() == Some(name)
            && vol["hostPath"]["path"].as_str() == Some("/run/log/journal")),
        "alloy: volume {name} is the host's /run/log/journal"
    );
    // The config reads both and ships them to the Loki this cluster runs.
    let config = v["alloy"]["configMap"]["content"].as_str().unwrap();
    assert!(config.contains("loki.source.journal"), "no journal source");
    assert!(
        config.contains("\"/var/log/pods/*/*/*.log\""),
        "no pod logs"
    );
    assert!(config.contains("stage.cri"), "pod logs are CRI-formatted");
    assert!(
        config.contains("http://loki.logs.svc.cluster.local:3100/loki/api/v1/push"),
        "alloy pushes to Loki"
    );
    assert!(
        !config.contains("{{"),
        "alloy.configMap.content goes through Helm's tpl"
    );
}

/// Issue 14, logs: Loki keeps its chunks and index on the SSD storage class, on the control
/// plane, with one replica and no object store (chart loki 18.11.0, `singleBinary.*`).
#[test]
fn loki_stores_on_the_storage_class_on_the_control_plane() {
    let mut values = example_values();
    values.storage_class = "ssd-test".into();
    let files = render_all(
        &manifests_dir(),
        &values,
        &ServiceSelection::all(),
        &example_credentials(),
        &[],
    )
    .unwrap();
    let docs = all_documents(&files);
    let v = chart_values(&docs, "loki");
    assert_eq!(v["deploymentMode"].as_str(), Some("Monolithic"));
    assert_eq!(v["loki"]["storage"]["type"].as_str(), Some("filesystem"));
    let sb = &v["singleBinary"];
    assert_eq!(sb["replicas"].as_u64(), Some(1));
    assert_eq!(sb["persistence"]["enabled"].as_bool(), Some(true));
    assert_eq!(sb["persistence"]["storageClass"].as_str(), Some("ssd-test"));
    assert_eq!(
        sb["nodeSelector"]["kubernetes.io/arch"].as_str(),
        Some("amd64")
    );
    // The SimpleScalable targets default to 3 replicas each: none of them.
    for target in ["read", "write", "backend"] {
        assert_eq!(v[target]["replicas"].as_u64(), Some(0), "loki: {target}");
    }
    // In-cluster only, no login: no gateway, no Ingress.
    assert_eq!(v["loki"]["auth_enabled"].as_bool(), Some(false));
    assert_eq!(v["gateway"]["enabled"].as_bool(), Some(false));
    assert!(v["ingress"]["enabled"].as_bool() != Some(true));
}

#[test]
fn grafana_has_loki_as_a_data_source_only_while_logs_and_monitoring_are_on() {
    let find = |services: &ServiceSelection| grafana_datasource(services, "loki.yaml");
    let (_, _, cm) = find(&ServiceSelection::all()).expect("a Loki datasource ConfigMap");
    assert_eq!(str_at(&cm, &["metadata", "namespace"]), Some("monitoring"));
    let ds: Value = serde_norway::from_str(str_at(&cm, &["data", "loki.yaml"]).unwrap()).unwrap();
    assert_eq!(ds["datasources"][0]["type"].as_str(), Some("loki"));
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://loki.logs.svc.cluster.local:3100")
    );
    let mut off = ServiceSelection::all();
    off.logs = false;
    assert!(find(&off).is_none(), "no Loki data source without Loki");
    let mut no_grafana = ServiceSelection::all();
    no_grafana.monitoring = false;
    no_grafana.otel_collector = false;
    assert!(
        find(&no_grafana).is_none(),
        "no Loki data source without Grafana"
    );
    // Loki and Alloy themselves stay with monitoring off.
    let docs = all_documents(&render_example(&no_grafana));
    chart_values(&docs, "loki");
    chart_values(&docs, "alloy");
}

/// Issue 14: the logs charts' images are on record like every chart's; Alloy runs on every
/// node, so both its containers need linux/arm64 builds (checked for every image by
/// `workloads_with_amd64_only_images_are_kept_on_amd64_nodes`; named here so that a change to
/// Alloy's placement or images is seen as the logs service's).
#[test]
fn every_logs_chart_has_its_architectures_on_record() {
    let files = render_example(&ServiceSelection::all());
    let mut seen = 0;
    for (path, _, doc) in all_documents(&files) {
        if str_at(&doc, &["kind"]) != Some("HelmChart")
            || str_at(&doc, &["metadata", "labels", "piimg.dev/service"]) != Some("logs")
        {
            continue;
        }
        seen += 1;
        let chart = str_at(&doc, &["spec", "chart"]).unwrap();
        assert!(
            CHART_IMAGES.iter().any(|e| e.chart == chart),
            "{}: chart {chart}: which architectures its images are built for is not on record",
            path.display()
        );
    }
    assert_eq!(seen, 2, "the logs service has the loki and alloy charts");
    let alloy: Vec<&ChartImage> = CHART_IMAGES.iter().filter(|e| e.chart == "alloy").collect();
    assert_eq!(alloy.len(), 2, "Alloy and its config reloader");
    for entry in alloy {
        assert!(
            entry.platforms.contains(&"linux/arm64"),
            "{} runs on the Pis: {}",
            entry.image,
            entry.platforms_source
        );
    }
}
