//! Base services wired through the example cluster: cluster.toml's `[manifests]` and
//! `[services]`, the server's staged manifests in the plan, the credentials in the secrets
//! file, and `piimg secrets show`, driven as a user would, without images.

use base64::Engine as _;
use piimg::manifests::Service;
use piimg::plan::{compute, Content, Edit, Plan, STAGED_MANIFESTS};
use piimg::secrets::{self, ClusterSecrets};
use piimg::spec::{resolve, Overrides};
use piimg::verb::{inputs_for_plan, render_manifests};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

mod example;
use example::{example, Example as Cluster};

impl Cluster {
    fn secrets(&self) -> ClusterSecrets {
        secrets::load(&self.profiles.join("secrets.toml")).unwrap()
    }
    fn plan(&self, node: &str) -> Plan {
        let spec = resolve(&self.profiles, node, &Overrides::default())
            .unwrap_or_else(|e| panic!("{node}: {e}"));
        let manifests = render_manifests(&spec).unwrap_or_else(|e| panic!("{node}: {e}"));
        compute(&spec, &inputs_for_plan(&spec, manifests).unwrap())
    }
    fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let p = self.profiles.join(file);
        fs::write(&p, f(fs::read_to_string(&p).unwrap())).unwrap();
    }
    fn piimg(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_piimg"))
            .args(args)
            .arg("--profiles")
            .arg(&self.profiles)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }
}

/// `(path, mode, secret)` of every file staged under the manifests folder.
fn staged_files(plan: &Plan) -> Vec<(String, u32, bool)> {
    plan.edits
        .iter()
        .filter_map(|e| match e {
            Edit::WriteFile {
                path,
                mode,
                content,
                ..
            } if path.starts_with(STAGED_MANIFESTS) => {
                Some((path.clone(), *mode, matches!(content, Content::Secret(_))))
            }
            _ => None,
        })
        .collect()
}

fn text_of<'a>(plan: &'a Plan, path: &str) -> &'a str {
    plan.edits
        .iter()
        .find_map(|e| match e {
            Edit::WriteFile {
                path: p,
                content: Content::Text(t),
                ..
            } if p == path => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path} not written as text"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn server_plan_stages_every_enabled_service_with_credentials_0600() {
    let c = example();
    let p = c.plan("control-plane");
    let files = staged_files(&p);
    for service in Service::ALL {
        let folder = format!("{STAGED_MANIFESTS}/{}/", service.name());
        assert!(
            files.iter().any(|(path, ..)| path.starts_with(&folder)),
            "nothing staged for {service}"
        );
        let mkdir = p.edits.iter().position(|e| {
            matches!(e, Edit::Mkdir { path, mode: 0o700, uid: 0, gid: 0 }
                if *path == folder.trim_end_matches('/'))
        });
        let first_file = p
            .edits
            .iter()
            .position(|e| matches!(e, Edit::WriteFile { path, .. } if path.starts_with(&folder)));
        assert!(
            mkdir.is_some() && mkdir < first_file,
            "{folder} not created 0700 before its files"
        );
    }
    assert!(p.edits.iter().any(|e| matches!(e,
        Edit::Mkdir { path, mode: 0o700, .. } if path == STAGED_MANIFESTS)));
    assert!(files
        .iter()
        .any(|(path, ..)| *path == format!("{STAGED_MANIFESTS}/namespaces.yaml")));
    let secrets = c.secrets();
    let mut credential_files = 0;
    for (path, mode, secret) in &files {
        if path.ends_with("-credentials.yaml") {
            credential_files += 1;
            assert!(
                *secret && *mode == 0o600,
                "{path}: {mode:o}, secret {secret}"
            );
        } else {
            assert!(
                !*secret && *mode == 0o644,
                "{path}: {mode:o}, secret {secret}"
            );
            let text = text_of(&p, path);
            for value in secrets.services.values() {
                assert!(!text.contains(value), "{path} shows a credential");
            }
        }
    }
    assert_eq!(
        credential_files, 5,
        "one Secret file per service with a login"
    );
}

#[test]
fn agent_plans_stage_no_manifests() {
    let c = example();
    for node in ["worker-1", "worker-2", "worker-3", "worker-4"] {
        let spec = resolve(&c.profiles, node, &Overrides::default()).unwrap();
        assert!(spec.manifests.is_none());
        assert!(render_manifests(&spec).unwrap().is_empty());
        let p = c.plan(node);
        assert!(
            !p.edits
                .iter()
                .any(|e| format!("{e}").contains(STAGED_MANIFESTS)),
            "{node} stages manifests"
        );
    }
}

#[test]
fn a_service_turned_off_is_left_out() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace("[services]\n", "[services]\nray = false\n")
    });
    let p = c.plan("control-plane");
    let files = staged_files(&p);
    assert!(
        !files.iter().any(|(path, ..)| path.contains("/ray/")),
        "ray files staged"
    );
    assert!(!p
        .edits
        .iter()
        .any(|e| matches!(e, Edit::Mkdir { path, .. } if path.ends_with("/ray"))));
    let namespaces = text_of(&p, &format!("{STAGED_MANIFESTS}/namespaces.yaml"));
    assert!(!namespaces.contains("name: ray\n"), "{namespaces}");
    assert!(files.iter().any(|(path, ..)| path.contains("/dask/")));
}

#[test]
fn plan_command_shows_no_credential_value() {
    let c = example();
    let text = c.piimg(&["plan", "--all"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let json = c.piimg(&["plan", "--profile", "control-plane", "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["node"], "control-plane");
    let text = format!("{}{}", String::from_utf8_lossy(&text.stdout), stderr(&text));
    let json = format!("{}{}", String::from_utf8_lossy(&json.stdout), stderr(&json));
    assert!(text.contains("/var/lib/piimg/manifests/minio/minio-credentials.yaml"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let secrets = c.secrets();
    let mut checked = 0;
    for value in secrets.services.values() {
        for shown in [value.to_string(), b64.encode(value)] {
            assert!(!text.contains(&shown), "plan text shows a credential");
            assert!(!json.contains(&shown), "plan JSON shows a credential");
        }
        checked += 1;
    }
    assert!(
        checked >= 9,
        "every generated credential checked ({checked})"
    );
}

#[test]
fn a_secrets_file_without_service_credentials_is_filled_when_needed() {
    let c = example();
    let path = c.profiles.join("secrets.toml");
    let before = c.secrets();
    let text = fs::read_to_string(&path).unwrap();
    let cut = text.find("[services").unwrap();
    fs::write(&path, &text[..cut]).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    // An agent needs none: its plan leaves the file alone.
    let agent = c.piimg(&["plan", "--profile", "worker-1"]);
    assert!(agent.status.success(), "{}", stderr(&agent));
    assert!(c.secrets().services.values().next().is_none());
    let out = c.piimg(&["plan", "--profile", "control-plane"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = c.secrets();
    assert!(after.services.missing().is_empty());
    assert_eq!(after.k3s_token, before.k3s_token);
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        shown.contains("generated missing service credentials"),
        "{shown}"
    );
    for value in after.services.values() {
        assert!(!shown.contains(value), "a new credential was printed");
    }
    // The next plan reuses them: same build id.
    assert_eq!(
        c.plan("control-plane").build_id,
        c.plan("control-plane").build_id
    );
}

#[test]
fn secrets_show_prints_a_login_and_only_that() {
    let c = example();
    let out = c.piimg(&["secrets", "show", "minio"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let s = c.secrets();
    let user = s.services.get("minio", "root-user").unwrap();
    let password = s.services.get("minio", "root-password").unwrap();
    assert_eq!(stdout, format!("user: {user}\npassword: {password}\n"));
    assert!(!stdout.contains(s.services.get("minio", "mlflow-secret-key").unwrap()));
    assert!(!stdout.contains(s.k3s_token.expose()));

    let grafana = c.piimg(&["secrets", "show", "monitoring"]);
    assert!(String::from_utf8_lossy(&grafana.stdout).contains(
        s.services
            .get("monitoring", "grafana-admin-password")
            .unwrap()
    ));
}

#[test]
fn secrets_show_unknown_or_loginless_service_lists_the_services() {
    let c = example();
    let out = c.piimg(&["secrets", "show", "nope"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("no service `nope`"), "{err}");
    for service in Service::ALL {
        assert!(err.contains(service.name()), "{service} not listed: {err}");
    }
    let ray = c.piimg(&["secrets", "show", "ray"]);
    assert!(!ray.status.success() && ray.stdout.is_empty());
    let err = stderr(&ray);
    assert!(
        err.contains("ray has no login") && err.contains("minio, postgresql"),
        "{err}"
    );
}

#[test]
fn secrets_show_refuses_an_open_secrets_file() {
    let c = example();
    let path = c.profiles.join("secrets.toml");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let out = c.piimg(&["secrets", "show", "minio"]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn a_bad_services_key_names_file_and_key() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace("[services]\n", "[services]\nrey = false\n")
    });
    let err = resolve(&c.profiles, "control-plane", &Overrides::default()).unwrap_err();
    let e = &err.0[0];
    assert!(e.file.ends_with("cluster.toml"), "{err}");
    assert_eq!(e.key, "services.rey", "{err}");
    assert!(
        e.problem.contains("unknown field `rey`") && !e.fix.is_empty(),
        "{err}"
    );
    let out = c.piimg(&["plan", "--profile", "worker-1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cluster.toml: key `services.rey`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn manifests_and_services_problems_come_with_the_others() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace("domain = \"lab.example\"", "domain = \"Lab Example\"")
            .replace("[services]\n", "[services]\npostgresql = false\n")
            .replace("\"worker-4\"]", "\"worker-4\", \"worker-4\"]")
            + "\n[manifests.vars]\ndomain = \"x\"\n"
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "manifests.domain",
        "services.postgresql",
        "manifests.vars.domain",
        "nodes[5]",
    ] {
        assert!(keys.contains(&key), "no `{key}` in:\n{err}");
    }
    assert!(
        err.0
            .iter()
            .all(|e| e.file.ends_with("cluster.toml") && !e.fix.is_empty()),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("mlflow") && text.contains("jupyterhub"),
        "{text}"
    );
}

#[test]
fn a_server_needs_the_manifests_table_and_folder() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace("[manifests]\ndomain = \"lab.example\"\n", "")
            .replace(
                "manifests_dir = \"../manifests\"",
                "manifests_dir = \"../nope\"",
            )
    });
    let err = resolve(&c.profiles, "control-plane", &Overrides::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"manifests.domain") && keys.contains(&"manifests_dir"),
        "{err}"
    );
    // Agents render nothing, so they do not need either.
    resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap();
}

#[test]
fn a_profile_adds_its_own_manifests_folder() {
    let c = example();
    let own = c.profiles.join("cp-extra");
    fs::create_dir(&own).unwrap();
    fs::write(
        own.join("greeting.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n  namespace: default\ndata:\n  text: \"${greeting} from ${cluster_name}\"\n",
    )
    .unwrap();
    c.edit("control-plane.toml", |t| {
        format!("manifests = \"cp-extra\"\n{t}")
    });
    c.edit("cluster.toml", |t| {
        t + "\n[manifests.vars]\ngreeting = \"hello\"\n"
    });
    let p = c.plan("control-plane");
    let path = format!("{STAGED_MANIFESTS}/cp-extra/greeting.yaml");
    assert!(text_of(&p, &path).contains("text: \"hello from homelab\""));
    assert!(staged_files(&p).contains(&(path, 0o644, false)));

    c.edit("worker-1.toml", |t| {
        format!("manifests = \"cp-extra\"\n{t}")
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    assert!(
        err.0[0].file.ends_with("worker-1.toml") && err.0[0].key == "manifests",
        "{err}"
    );
    c.edit("control-plane.toml", |t| t.replace("cp-extra", "missing"));
    let err = resolve(&c.profiles, "control-plane", &Overrides::default()).unwrap_err();
    assert!(
        err.0[0].file.ends_with("control-plane.toml") && err.0[0].problem.contains("missing"),
        "{err}"
    );
}

#[test]
fn control_plane_plan_lists_logs_the_node_dashboard_and_traces() {
    let c = example();
    let out = c.piimg(&["plan", "--profile", "control-plane"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for staged in [
        "/var/lib/piimg/manifests/logs/loki.yaml",
        "/var/lib/piimg/manifests/logs/alloy.yaml",
        "/var/lib/piimg/manifests/monitoring/grafana-datasource-loki.yaml",
        "/var/lib/piimg/manifests/monitoring/grafana-dashboard-cluster-nodes.yaml",
        "/var/lib/piimg/manifests/monitoring/grafana-datasource-jaeger.yaml",
        "/var/lib/piimg/manifests/jaeger/jaeger.yaml",
        "/var/lib/piimg/manifests/otel-collector/otel-collector.yaml",
    ] {
        assert!(
            text.contains(staged),
            "plan does not list {staged}:\n{text}"
        );
    }
    // An agent bakes none of them.
    let agent = c.piimg(&["plan", "--profile", "worker-1"]);
    assert!(agent.status.success(), "{}", stderr(&agent));
    assert!(!String::from_utf8_lossy(&agent.stdout).contains("manifests/logs/"));
}
