//! The example cluster in `profiles/`, resolved and planned as a user would, without images.

use piimg::plan::{compute, Content, Edit, Plan, TIME_WAIT_SYNC_UNIT};
use piimg::secrets;
use piimg::spec::{resolve, Flavour, HostsEntry, NodeSpec, Overrides};
use piimg::verb::{inputs_for_plan, render_manifests};
use piimg_firstboot::unit;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod example;
use example::{example, Example as Cluster};

impl Cluster {
    fn spec(&self, node: &str) -> NodeSpec {
        self.spec_with(node, &Overrides::default())
    }
    fn spec_with(&self, node: &str, ov: &Overrides) -> NodeSpec {
        resolve(&self.profiles, node, ov).unwrap_or_else(|e| panic!("{node}: {e}"))
    }
    fn plan(&self, node: &str, ov: &Overrides) -> Plan {
        let spec = self.spec_with(node, ov);
        let manifests = render_manifests(&spec).unwrap_or_else(|e| panic!("{node}: {e}"));
        compute(&spec, &inputs_for_plan(&spec, manifests).unwrap())
    }
    fn edit(&self, file: &str, f: impl FnOnce(String) -> String) {
        let p = self.profiles.join(file);
        fs::write(&p, f(fs::read_to_string(&p).unwrap())).unwrap();
    }
    /// Every secret value the cluster has, and every node password.
    fn secret_values(&self) -> Vec<String> {
        let s = &self.secrets;
        let mut v: Vec<String> = [
            &s.k3s_token,
            &s.agent_token,
            &s.report_key,
            &s.node_password_seed,
        ]
        .iter()
        .map(|x| x.expose().to_string())
        .collect();
        for n in [
            "control-plane",
            "worker-1",
            "worker-2",
            "worker-3",
            "worker-4",
        ] {
            v.push(
                secrets::node_password(&s.node_password_seed, n)
                    .expose()
                    .to_string(),
            );
        }
        v.extend(s.services.values().map(str::to_string));
        v
    }
}

fn written<'a>(plan: &'a Plan, path: &str) -> Option<&'a Edit> {
    plan.edits
        .iter()
        .find(|e| matches!(e, Edit::WriteFile { path: p, .. } if p == path))
}

fn has(plan: &Plan, want: &Edit) -> bool {
    plan.edits.contains(want)
}

fn mask(unit: &str) -> Edit {
    Edit::MaskUnit { unit: unit.into() }
}

fn remove(path: &str) -> Edit {
    Edit::Remove { path: path.into() }
}

fn cmdline(plan: &Plan) -> Option<(&str, &[String])> {
    plan.edits.iter().find_map(|e| match e {
        Edit::EnsureCmdlineParams { file, params } => Some((file.as_str(), params.as_slice())),
        _ => None,
    })
}

fn secret_text(plan: &Plan, path: &str) -> String {
    match written(plan, path) {
        Some(Edit::WriteFile {
            content: Content::Secret(s),
            ..
        }) => s.expose().to_string(),
        other => panic!("{path}: {other:?}"),
    }
}

// ---- resolving ----

#[test]
fn every_example_node_resolves_with_defaults_filled() {
    let c = example();
    for node in [
        "control-plane",
        "worker-1",
        "worker-2",
        "worker-3",
        "worker-4",
    ] {
        let s = c.spec(node);
        assert_eq!(s.hostname, node);
        assert_eq!(s.user, "admin");
        assert_eq!(s.storage.mount_point, "/mnt/storage");
        assert_eq!(
            s.storage.label,
            format!("piimg-{}", &c.secrets.cluster_id[..8])
        );
        assert!(s.storage.label.len() <= 16);
        assert_eq!(s.k3s.version, "v1.31.4+k3s1");
        assert!(!s.ssh_keys.is_empty());
    }
    let w4 = c.spec("worker-4");
    assert_eq!(w4.base.flavour(), Flavour::UbuntuRaspi { ab_boot: false });
    assert_eq!(
        w4.k3s.labels["piimg.dev/tier"], "worker",
        "inherited from worker-1"
    );
    assert_eq!(w4.k3s.taints, ["dedicated=batch:NoSchedule"]);
    assert_eq!(w4.k3s.server_url, "https://control-plane.local:6443");
    let w2 = c.spec("worker-2");
    assert_eq!(w2.k3s.labels.len(), 3, "worker-1's two labels plus its own");
    assert!(w2.network.static_address.is_some());
}

#[test]
fn base_override_by_name_switches_flavour_by_path_keeps_it() {
    let c = example();
    let by_name = Overrides {
        base: Some("raspios-trixie".into()),
        ..Default::default()
    };
    assert_eq!(
        c.spec_with("worker-2", &by_name).base.flavour(),
        Flavour::Trixie
    );
    let by_path = Overrides {
        base: Some("/tmp/lookalike.img".into()),
        ..Default::default()
    };
    let s = c.spec_with("worker-2", &by_path);
    assert_eq!(s.base.flavour(), Flavour::Bookworm);
    assert_eq!(s.base.url, "/tmp/lookalike.img");
}

#[test]
fn all_validation_errors_come_at_once_with_file_key_and_fix() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace("https://control-plane.local:6443", "http://localhost:6443")
            + "\n[k3s.releases.\"v1.32.0+k3s1\".arm64]\nurl = \"https://example.invalid/k3s-arm64\"\nsha256 = \""
            + &"a".repeat(64)
            + "\"\n"
    });
    fs::write(
        c.profiles.join("worker-1.toml"),
        "role = \"agent\"\nbase = \"raspios-jessie\"\nhostname = \"Worker_1\"\nk3s_version = \"v1.32.0+k3s1\"\ntaints = [\"oops\"]\n[network]\nstatic = { address = \"10.0.0.5\", gateway = \"10.0.0.1\" }\n",
    )
    .unwrap();
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    let text = err.to_string();
    let expect = [
        ("cluster.toml", "server.url", "https://HOST:6443"),
        ("worker-1.toml", "hostname", "lower-case"),
        ("worker-1.toml", "base", "use one of:"),
        ("worker-1.toml", "taints[0]", "dedicated=storage:NoSchedule"),
        ("worker-1.toml", "network.static.address", "192.168.1.12/24"),
    ];
    for (file, key, fix) in expect {
        let hit = err
            .0
            .iter()
            .find(|e| e.file.ends_with(file) && e.key == key);
        let e = hit.unwrap_or_else(|| panic!("no error for {file} {key} in:\n{text}"));
        assert!(e.fix.contains(fix), "{e}");
        assert!(e.to_string().contains(file) && e.to_string().contains(key));
    }
    assert!(err.0.len() >= expect.len(), "{text}");
    assert!(text.contains("problems in the profiles"), "{text}");
}

/// Issue 13.2: k3s is a static musl binary (no NSS, no mDNS). An agent told to join
/// `https://control-plane.local:6443` with nothing mapping that name never reaches the server.
#[test]
fn a_server_name_no_node_could_resolve_is_refused_at_plan() {
    let c = example();
    // The server without a static address: nothing tells the agents where `.local` is.
    c.edit("control-plane.toml", |t| {
        t.replace(
            "static = { address = \"192.168.1.10/24\", gateway = \"192.168.1.1\", dns = [\"192.168.1.1\"] }\n",
            "",
        )
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.key == "server.url")
        .unwrap_or_else(|| panic!("no server.url error in: {err}"));
    assert!(e.file.ends_with("cluster.toml"), "{e}");
    assert!(
        e.problem.contains("control-plane.local") && e.problem.contains("mDNS"),
        "{e}"
    );
    assert!(
        e.fix.contains("server.address") && e.fix.contains("control-plane.toml"),
        "{e}"
    );

    // Named in cluster.toml instead: every node maps it, the server included.
    c.edit("cluster.toml", |t| {
        t.replace(
            "node = \"control-plane\"\n",
            "node = \"control-plane\"\naddress = \"10.0.2.2\"\n",
        )
    });
    for node in ["worker-1", "control-plane"] {
        let p = c.plan(node, &Overrides::default());
        let hosts = p
            .edits
            .iter()
            .find_map(|e| match e {
                Edit::EditHosts { entries, .. } => Some(entries.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            hosts,
            [HostsEntry {
                address: "10.0.2.2".into(),
                name: "control-plane.local".into()
            }],
            "{node}"
        );
    }

    // An IP address needs no mapping; a DNS name is left to DNS.
    for (url, mapped) in [
        ("https://10.0.2.2:6443", false),
        ("https://k3s.lab.example:6443", false),
    ] {
        c.edit("cluster.toml", |t| {
            t.replace("address = \"10.0.2.2\"\n", "")
                .replace("https://control-plane.local:6443", url)
        });
        let p = c.plan("worker-1", &Overrides::default());
        let n = p
            .edits
            .iter()
            .find_map(|e| match e {
                Edit::EditHosts { entries, .. } => Some(entries.len()),
                _ => None,
            })
            .unwrap();
        assert_eq!(n > 0, mapped, "{url}");
        c.edit("cluster.toml", |t| {
            t.replace(url, "https://control-plane.local:6443")
        });
    }

    // The report URL is read by piimg-firstboot, a static musl binary too.
    c.edit("cluster.toml", |t| {
        t.replace(
            "http://192.168.1.2:8787/report",
            "http://workstation.local:8787/report",
        )
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|e| e.key.ends_with("report_url") && e.problem.contains("mDNS")),
        "{err}"
    );
}

/// Issue 13.6: the kubelet exits at start on a `kubernetes.io`/`k8s.io` node label outside its
/// allowed set, so a node labelled `node-role.kubernetes.io/worker` never became Ready.
#[test]
fn labels_the_kubelet_refuses_are_refused_at_plan() {
    let c = example();
    c.edit("worker-1.toml", |t| {
        t.replace(
            "[labels]\n",
            "[labels]\n\"node-role.kubernetes.io/worker\" = \"\"\n\"node.kubernetes.io/pool\" = \"pis\"\n",
        )
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    assert_eq!(err.0.len(), 1, "only the refused label: {err}");
    let e = &err.0[0];
    assert!(e.file.ends_with("worker-1.toml"), "{e}");
    assert_eq!(e.key, "labels.\"node-role.kubernetes.io/worker\"");
    assert!(e.problem.contains("--node-labels"), "{e}");
    assert!(
        e.fix.contains("node.kubernetes.io") && e.fix.contains("kubectl label node"),
        "{e}"
    );
    // An agent extending worker-1 inherits the problem, reported against worker-1's file.
    let err = resolve(&c.profiles, "worker-2", &Overrides::default()).unwrap_err();
    assert!(err.0[0].file.ends_with("worker-1.toml"), "{err}");
}

/// Issue 13.10: a catalogue digest nobody confirmed must not pass for a confirmed one. The
/// example's digests are the published ones, each with the checksum file it comes from; an
/// entry without that is refused, and `--allow-unverified` accepts it knowingly.
#[test]
fn catalogue_entries_without_a_published_source_are_refused() {
    let c = example();
    let cluster = fs::read_to_string(c.profiles.join("cluster.toml")).unwrap();
    let table: toml::Table = cluster.parse().unwrap();
    for (name, b) in table["bases"].as_table().unwrap() {
        let from = b["sha256_from"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            from.starts_with("https://")
                && (from.ends_with(".sha256") || from.ends_with("SHA256SUMS")),
            "{name}: {from}"
        );
    }
    let placeholders = [
        "012b306821ed",
        "21d07de52647",
        "04ee05906da6",
        "a3bf7481c80e",
        "7416953697c1",
        "28fd0734440f",
    ];
    for p in placeholders {
        assert!(
            !cluster.contains(p),
            "an old placeholder digest is still pinned: {p}"
        );
    }

    c.edit("cluster.toml", |t| {
        let i = t.find("[bases.raspios-bookworm]").unwrap();
        let line_start = i + t[i..].find("sha256_from").unwrap();
        let line_end = line_start + t[line_start..].find('\n').unwrap() + 1;
        format!("{}{}", &t[..line_start], &t[line_end..])
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.key == "bases.raspios-bookworm.sha256_from")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(e.file.ends_with("cluster.toml"), "{e}");
    assert!(e.problem.contains("never confirmed"), "{e}");
    assert!(
        e.fix.contains("--allow-unverified") && e.fix.contains("checksum"),
        "{e}"
    );
    // Another node on another base is not affected; knowingly accepted, it resolves.
    assert!(resolve(&c.profiles, "worker-4", &Overrides::default()).is_ok());
    let knowingly = Overrides {
        allow_unverified: true,
        ..Default::default()
    };
    assert!(resolve(&c.profiles, "worker-1", &knowingly).is_ok());
    // A file given with --base replaces the catalogue's: its digest is recorded, not pinned.
    let by_path = Overrides {
        base: Some("/tmp/lookalike.img".into()),
        ..Default::default()
    };
    assert!(resolve(&c.profiles, "worker-1", &by_path).is_ok());
}

#[test]
fn agent_newer_than_server_is_refused() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t + "\n[k3s.releases.\"v1.32.0+k3s1\".arm64]\nurl = \"https://example.invalid/k3s-arm64\"\nsha256 = \""
            + &"a".repeat(64)
            + "\"\n"
    });
    // At the top: after `[kernel]` the key would belong to that table.
    c.edit("worker-3.toml", |t| {
        format!("k3s_version = \"v1.32.0+k3s1\"\n{t}")
    });
    let err = resolve(&c.profiles, "worker-3", &Overrides::default()).unwrap_err();
    let e = err
        .0
        .iter()
        .find(|e| e.key == "k3s_version")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(e.file.ends_with("worker-3.toml"));
    assert!(
        e.problem.contains("newer than the server's `v1.31.4+k3s1`"),
        "{e}"
    );
    assert!(e.fix.contains("upgrade the server first"), "{e}");
}

#[test]
fn unknown_key_and_wrong_type_name_file_and_key() {
    let c = example();
    c.edit("worker-2.toml", |t| {
        t.replace("[labels]", "colour = \"red\"\n[labels]")
    });
    let e = resolve(&c.profiles, "worker-2", &Overrides::default()).unwrap_err();
    assert!(e.0[0].file.ends_with("worker-2.toml"), "{e}");
    assert!(e.0[0].problem.contains("unknown field `colour`"), "{e}");
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replace(
            "selector = { usb_min_gb = 100 }",
            "selector = { usb_min_gb = \"big\" }",
        )
    });
    let e = resolve(&c.profiles, "worker-2", &Overrides::default()).unwrap_err();
    assert!(e.0[0].file.ends_with("cluster.toml"), "{e}");
    assert!(e.0[0].key.starts_with("defaults.storage.selector"), "{e}");
}

#[test]
fn missing_defaults_are_reported_against_the_node() {
    let c = example();
    c.edit("cluster.toml", |t| {
        let start = t.find("[defaults]").unwrap();
        t[..start].to_string()
    });
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert!(
        keys.contains(&"ssh_keys") && keys.contains(&"storage.selector"),
        "{err}"
    );
}

#[test]
fn secrets_file_readable_by_others_is_refused() {
    let c = example();
    let path = c.profiles.join("secrets.toml");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = resolve(&c.profiles, "worker-1", &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn overlays_walked_with_modes_and_sidecar_owners() {
    let c = example();
    let ov = c.profiles.join("../overlays");
    fs::create_dir_all(ov.join("agent/etc/motd.d")).unwrap();
    fs::write(ov.join("agent/etc/motd.d/hello"), "hi\n").unwrap();
    fs::set_permissions(
        ov.join("agent/etc/motd.d/hello"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    fs::write(
        ov.join("agent.owners.toml"),
        "[\"/etc/motd.d/hello\"]\nuid = 1000\ngid = 4\n",
    )
    .unwrap();
    let s = c.spec("worker-1");
    let e = s
        .root_entries
        .iter()
        .find(|e| e.path == "/etc/motd.d/hello")
        .unwrap();
    assert_eq!((e.mode, e.uid, e.gid), (0o640, 1000, 4));
    assert!(s
        .root_entries
        .iter()
        .any(|e| e.path == "/etc/motd.d" && e.uid == 0));
    assert!(c
        .spec("control-plane")
        .root_entries
        .iter()
        .all(|e| !e.path.starts_with("/etc/motd.d")));
}

/// Issue 15.6, 15.12, 15.13: profile input that would take over what the image depends on.
#[test]
fn system_accounts_piimg_files_and_sources_outside_the_profiles_are_refused() {
    let c = example();
    let first_error = |node: &str| {
        resolve(&c.profiles, node, &Overrides::default())
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    };
    // A system account as the login user: it would be rewritten into uid 1000.
    for user in ["root", "daemon", "nobody", "systemd-network"] {
        c.edit("worker-1.toml", |t| format!("user = \"{user}\"\n{t}"));
        let errs = first_error("worker-1");
        assert!(
            errs.iter()
                .any(|e| e.key == "user" && e.problem.contains("system account")),
            "{user}: {errs:?}"
        );
        c.edit("worker-1.toml", |t| {
            t.replacen(&format!("user = \"{user}\"\n"), "", 1)
        });
    }
    assert!(first_error("worker-1").is_empty());

    // A profile file over piimg's own k3s config: refused unless replaced knowingly.
    let files = |extra: &str| {
        format!("\n[[files]]\npath = \"/etc/rancher/k3s/config.yaml\"\ncontent = \"x\"\n{extra}")
    };
    c.edit("worker-2.toml", |t| t + &files(""));
    let errs = first_error("worker-2");
    let e = errs
        .iter()
        .find(|e| e.key == "files[0].path")
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(e.fix.contains("replace_piimg_file = true"), "{e}");
    c.edit("worker-2.toml", |t| {
        t.replace(&files(""), &files("replace_piimg_file = true\n"))
    });
    assert!(first_error("worker-2").is_empty());

    // Sources outside the profiles folder: absolute, `..`, a symlink leading out.
    let outside = c.profiles.join("../outside.txt");
    fs::write(&outside, "secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, c.profiles.join("link.txt")).unwrap();
    fs::write(c.profiles.join("inside.txt"), "ok\n").unwrap();
    for (source, refused) in [
        ("/etc/hostname", true),
        ("../outside.txt", true),
        ("link.txt", true),
        ("inside.txt", false),
    ] {
        c.edit("worker-3.toml", |t| {
            format!("{t}\n[[files]]\npath = \"/etc/extra\"\nsource = \"{source}\"\n")
        });
        let errs = first_error("worker-3");
        assert_eq!(
            errs.iter()
                .any(|e| e.key == "files[0].source"
                    && e.problem.contains("outside the profiles folder")),
            refused,
            "{source}: {errs:?}"
        );
        c.edit("worker-3.toml", |t| {
            t.replace(
                &format!("\n[[files]]\npath = \"/etc/extra\"\nsource = \"{source}\"\n"),
                "",
            )
        });
    }

    // An overlay can never replace one of piimg's files.
    let ov = c.profiles.join("../overlays/agent/etc/rancher/node");
    fs::create_dir_all(&ov).unwrap();
    fs::write(ov.join("password"), "mine\n").unwrap();
    let errs = first_error("worker-1");
    assert!(
        errs.iter()
            .any(|e| e.problem.contains("/etc/rancher/node/password")
                && e.problem.contains("piimg writes itself")),
        "{errs:?}"
    );
}

// ---- plans per base ----

#[test]
fn bookworm_worker_plan() {
    let c = example();
    let p = c.plan("worker-1", &Overrides::default());
    assert_eq!(p.flavour, Flavour::Bookworm);
    let (file, params) = cmdline(&p).unwrap();
    assert_eq!(file, "cmdline.txt");
    assert_eq!(params, ["cgroup_memory=1", "cgroup_enable=memory"]);
    assert!(p.edits.iter().any(|e| matches!(e, Edit::SetConfigTxt { key, value, .. } if key == "kernel" && value == "kernel8.img")));
    assert!(has(&p, &mask("dphys-swapfile.service")) && has(&p, &remove("/var/swap")));
    assert!(has(&p, &mask("userconfig.service")));
    assert!(
        matches!(written(&p, "/etc/machine-id"), Some(Edit::WriteFile { content: Content::Text(t), .. }) if t.is_empty())
    );
    assert!(
        written(&p, "/etc/cloud/cloud-init.disabled").is_none(),
        "bookworm has no cloud-init"
    );
    assert!(has(
        &p,
        &Edit::EnableUnit {
            unit: "ssh.service".into(),
            unit_dir: "/lib/systemd/system".into(),
            wanted_by: "multi-user.target".into()
        }
    ));
    common_node_edits(&p, &c, "worker-1", "k3s-agent.service");
    let yaml = secret_text(&p, "/etc/rancher/k3s/config.yaml");
    assert!(yaml.contains("server: \"https://control-plane.local:6443\""));
    assert!(yaml.contains(&format!("token: \"{}\"", c.secrets.agent_token.expose())));
    assert!(
        !yaml.contains(c.secrets.k3s_token.expose()),
        "agents never carry the server token"
    );
    assert!(yaml.contains("data-dir: \"/mnt/storage/k3s\""));
    assert!(yaml.contains("  - \"piimg.dev/tier=worker\""));
}

#[test]
fn trixie_worker_plan() {
    let c = example();
    let p = c.plan("worker-3", &Overrides::default());
    assert_eq!(p.flavour, Flavour::Trixie);
    assert_eq!(
        cmdline(&p).unwrap().1.last().unwrap(),
        "usb-storage.quirks=152d:0578:u"
    );
    let conf = written(&p, "/etc/rpi/swap.conf.d/90-piimg.conf").unwrap();
    assert!(
        matches!(conf, Edit::WriteFile { content: Content::Text(t), .. } if t.contains("[Main]\nMechanism=none"))
    );
    assert!(!has(&p, &mask("dphys-swapfile.service")));
    assert!(
        matches!(written(&p, "/etc/machine-id"), Some(Edit::WriteFile { content: Content::Text(t), .. }) if t == "uninitialized\n")
    );
    assert!(written(&p, "/etc/cloud/cloud-init.disabled").is_some());
    common_node_edits(&p, &c, "worker-3", "k3s-agent.service");
}

#[test]
fn ubuntu_raspi_worker_plan() {
    let c = example();
    let p = c.plan("worker-4", &Overrides::default());
    assert_eq!(p.flavour, Flavour::UbuntuRaspi { ab_boot: false });
    assert_eq!(cmdline(&p).unwrap().0, "cmdline.txt");
    assert!(
        !p.edits
            .iter()
            .any(|e| matches!(e, Edit::SetConfigTxt { .. })),
        "Ubuntu's kernel has 4K pages"
    );
    assert!(has(&p, &remove("/swap.img")));
    assert!(p.edits.iter().any(|e| matches!(
        e,
        Edit::EditFstab {
            remove_swap: true,
            ..
        }
    )));
    assert!(written(&p, "/etc/cloud/cloud-init.disabled").is_some());
    assert!(
        written(&p, "/etc/netplan/90-piimg.yaml").is_some(),
        "with cloud-init off netplan needs a config"
    );
    let yaml = secret_text(&p, "/etc/rancher/k3s/config.yaml");
    assert!(yaml.contains("node-taint:\n  - \"dedicated=batch:NoSchedule\""));
    common_node_edits(&p, &c, "worker-4", "k3s-agent.service");
}

#[test]
fn ubuntu_25_10_edits_current_cmdline() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replacen(
            "release = \"24.04\"\narch = \"arm64\"",
            "release = \"25.10\"\narch = \"arm64\"",
            1,
        )
    });
    let p = c.plan("worker-4", &Overrides::default());
    assert_eq!(p.flavour, Flavour::UbuntuRaspi { ab_boot: true });
    assert_eq!(cmdline(&p).unwrap().0, "current/cmdline.txt");
}

#[test]
fn amd64_server_plan() {
    let c = example();
    let p = c.plan("control-plane", &Overrides::default());
    assert_eq!(p.flavour, Flavour::UbuntuAmd64);
    assert!(
        cmdline(&p).is_none() && !p.edits.iter().any(Edit::is_boot),
        "amd64 has no cmdline.txt"
    );
    assert!(
        written(&p, "/etc/default/grub.d/90-piimg.cfg").is_none(),
        "no GRUB drop-in unless a parameter is needed"
    );
    assert!(has(&p, &remove("/swap.img")));
    assert!(matches!(
        written(
            &p,
            "/var/lib/piimg/manifests/monitoring/monitoring-credentials.yaml"
        ),
        Some(Edit::WriteFile {
            mode: 0o600,
            content: Content::Secret(_),
            ..
        })
    ));
    let yaml = secret_text(&p, "/etc/rancher/k3s/config.yaml");
    assert!(yaml.contains(&format!("token: \"{}\"", c.secrets.k3s_token.expose())));
    assert!(yaml.contains(&format!(
        "agent-token: \"{}\"",
        c.secrets.agent_token.expose()
    )));
    assert!(!yaml.contains("server:"));
    assert!(
        yaml.contains("tls-san:\n  - \"control-plane.local\"\n"),
        "{yaml}"
    );
    common_node_edits(&p, &c, "control-plane", "k3s.service");
    // a profile kernel parameter on amd64 becomes a GRUB drop-in
    c.edit("control-plane.toml", |t| {
        t + "\n[kernel]\ncmdline_extra = [\"audit=0\"]\n"
    });
    let p = c.plan("control-plane", &Overrides::default());
    assert!(written(&p, "/etc/default/grub.d/90-piimg.cfg").is_some());
}

/// Edits every node gets, whatever the base.
fn common_node_edits(p: &Plan, c: &Cluster, node: &str, k3s_unit: &str) {
    let mode_of = |path: &str| match written(p, path) {
        Some(Edit::WriteFile { mode, .. }) => *mode,
        other => panic!("{path} not written: {other:?}"),
    };
    assert_eq!(mode_of("/usr/local/bin/k3s"), 0o755);
    for link in ["kubectl", "crictl", "ctr"] {
        assert!(has(
            p,
            &Edit::Symlink {
                path: format!("/usr/local/bin/{link}"),
                target: "k3s".into()
            }
        ));
    }
    assert_eq!(mode_of("/etc/rancher/k3s/config.yaml"), 0o600);
    assert_eq!(mode_of("/etc/rancher/node/password"), 0o600);
    let pw = secret_text(p, "/etc/rancher/node/password");
    assert_eq!(
        pw.trim(),
        secrets::node_password(&c.secrets.node_password_seed, node).expose()
    );
    assert_eq!(mode_of(&format!("/etc/systemd/system/{k3s_unit}")), 0o644);
    assert!(
        !p.edits
            .iter()
            .any(|e| matches!(e, Edit::EnableUnit { unit, .. } if unit.starts_with("k3s"))),
        "k3s is started by first boot, never enabled"
    );
    // k3s never runs off the SSD: the firstboot crate's drop-in, verbatim.
    assert!(
        matches!(written(p, &format!("/etc/systemd/system/{k3s_unit}.d/10-piimg.conf")),
            Some(Edit::WriteFile { content: Content::Text(t), mode: 0o644, .. })
            if *t == unit::k3s_dropin("/mnt/storage")),
        "k3s drop-in"
    );
    // The first-boot binary where issue 3 puts it, its unit exactly as the firstboot crate
    // ships it, enabled the way `systemctl enable` does.
    assert_eq!(unit::BINARY_PATH, "/usr/local/sbin/piimg-firstboot");
    assert_eq!(mode_of(unit::BINARY_PATH), 0o755);
    assert!(
        matches!(written(p, "/etc/systemd/system/piimg-firstboot.service"),
            Some(Edit::WriteFile { content: Content::Text(t), mode: 0o644, .. }) if t == unit::UNIT),
        "firstboot unit text"
    );
    assert!(unit::UNIT.contains("ExecStart=/usr/local/sbin/piimg-firstboot run"));
    let enabled = |unit: &str, wanted_by: &str| {
        p.edits.iter().find_map(|e| match e {
            Edit::EnableUnit { unit: u, .. } if u == unit => e.enable_link(),
            _ => None,
        }) == Some((
            format!("/etc/systemd/system/{wanted_by}.wants/{unit}"),
            match unit {
                "piimg-firstboot.service" => format!("/etc/systemd/system/{unit}"),
                _ => format!("/lib/systemd/system/{unit}"),
            },
        ))
    };
    assert!(enabled(unit::UNIT_NAME, "multi-user.target"));
    // The unit is ordered after time-sync.target, which only means something with this on.
    assert!(enabled(TIME_WAIT_SYNC_UNIT, "sysinit.target"));
    assert!(matches!(
        written(p, "/etc/systemd/system/systemd-time-wait-sync.service.d/10-piimg.conf"),
        Some(Edit::WriteFile { content: Content::Text(t), .. }) if t.contains("TimeoutStartSec=")
    ));
    assert_eq!(mode_of("/etc/piimg/node.toml"), 0o600);
    let cfg =
        piimg_firstboot::config::NodeConfig::from_toml(&secret_text(p, "/etc/piimg/node.toml"))
            .unwrap();
    assert_eq!(cfg.node, node);
    assert_eq!(cfg.build_id, p.build_id);
    assert_eq!(cfg.report.key, c.secrets.report_key.expose());
    assert_eq!(cfg.k3s.data_dir, "/mnt/storage/k3s");
    // Issue 13.4: with cloud-init off nothing grows Ubuntu's root, so first boot does;
    // Raspberry Pi OS grows its own (bookworm's init=, trixie's resize), which stays.
    assert_eq!(
        cfg.root.grow,
        matches!(
            p.flavour,
            Flavour::UbuntuRaspi { .. } | Flavour::UbuntuAmd64 | Flavour::Debian
        ),
        "{node}: {:?}",
        p.flavour
    );
    assert_eq!(cfg.k3s.server.is_some(), k3s_unit == "k3s-agent.service");
    assert!(written(p, "/etc/piimg/build.json").is_some());
    assert!(
        matches!(written(p, "/etc/hostname"), Some(Edit::WriteFile { content: Content::Text(t), .. }) if *t == format!("{node}\n"))
    );
    assert!(has(
        p,
        &Edit::EditHosts {
            hostname: node.into(),
            // k3s (static musl) cannot resolve `.local`: every node maps the server's name to
            // the control plane's static address.
            entries: vec![HostsEntry {
                address: "192.168.1.10".into(),
                name: "control-plane.local".into(),
            }],
        }
    ));
    assert!(has(p, &remove("/etc/ssh/ssh_host_ed25519_key")));
    assert!(p
        .edits
        .iter()
        .any(|e| matches!(e, Edit::EnsureUser(u) if u.name == "admin")));
    assert_eq!(mode_of("/home/admin/.ssh/authorized_keys"), 0o600);
    assert!(
        matches!(written(p, "/etc/ssh/sshd_config.d/10-piimg.conf"), Some(Edit::WriteFile { content: Content::Text(t), .. }) if t.contains("PasswordAuthentication no"))
    );
    let fstab = p.edits.iter().find_map(|e| match e {
        Edit::EditFstab { ensure, .. } => Some(ensure[0].clone()),
        _ => None,
    });
    let fstab = fstab.unwrap();
    assert_eq!(fstab.file, "/mnt/storage");
    assert!(
        fstab.spec.starts_with("LABEL=piimg-")
            && fstab.options.contains("nofail")
            && fstab.options.contains("x-systemd.device-timeout=")
    );
}

// ---- idempotency, determinism, masking ----

const SAMPLES: &[(&str, &str)] = &[
    ("cmdline.txt", "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait resize\n"),
    ("current/cmdline.txt", "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash\n"),
    ("config.txt", "dtparam=audio=on\n[cm4]\notg_mode=1\n[all]\narm_64bit=1\n"),
    ("/etc/fstab", "proc /proc proc defaults 0 0\nLABEL=writable / ext4 discard,errors=remount-ro 0 1\n/swap.img none swap sw 0 0\n"),
    ("/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n"),
];

#[test]
fn every_text_edit_of_every_plan_is_idempotent_and_keeps_other_lines() {
    let c = example();
    for node in [
        "control-plane",
        "worker-1",
        "worker-2",
        "worker-3",
        "worker-4",
    ] {
        let p = c.plan(node, &Overrides::default());
        for e in &p.edits {
            for (file, sample) in SAMPLES {
                let Some((target, once)) = e.transform(sample) else {
                    continue;
                };
                if target != *file {
                    continue;
                }
                assert_eq!(
                    e.transform(&once).unwrap().1,
                    once,
                    "{node}: {e} not idempotent"
                );
                for line in sample
                    .lines()
                    .filter(|l| !l.contains("swap") && !l.starts_with("127.0.1.1"))
                {
                    if target.ends_with("cmdline.txt") {
                        assert!(once.starts_with(line), "{e}: order lost");
                    } else {
                        assert!(once.contains(line), "{e}: lost `{line}`");
                    }
                }
            }
        }
    }
}

#[test]
fn plans_are_deterministic() {
    let c = example();
    let a = serde_json::to_string(&c.plan("worker-2", &Overrides::default())).unwrap();
    let b = serde_json::to_string(&c.plan("worker-2", &Overrides::default())).unwrap();
    assert_eq!(a, b);
}

fn piimg(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_piimg"))
        .args(args)
        .arg("--profiles")
        .arg(&c.profiles)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

#[test]
fn plan_command_output_and_json_never_show_a_secret() {
    let c = example();
    let text = piimg(&c, &["plan", "--all"]);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let json = piimg(
        &c,
        &[
            "plan",
            "--profile",
            "control-plane",
            "--profile",
            "worker-2",
            "--json",
        ],
    );
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let (text, json) = (
        String::from_utf8(text.stdout).unwrap(),
        String::from_utf8(json.stdout).unwrap(),
    );
    assert!(text.contains("plan for worker-4") && text.contains("/etc/rancher/k3s/config.yaml"));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 2);
    assert_eq!(parsed[0]["source_date_epoch"], 1700000000);
    for secret in c.secret_values() {
        assert!(!text.contains(&secret), "plan text shows a secret");
        assert!(!json.contains(&secret), "plan JSON shows a secret");
    }
    // Debug of a spec masks too (logs use it).
    let dbg = format!("{:?}", c.spec("control-plane"));
    for secret in c.secret_values() {
        assert!(!dbg.contains(&secret), "Debug shows a secret");
    }
}

/// Issue 14: `piimg plan --profile control-plane` says which base services the image carries,
/// with the parts a user looks for (logs, the node dashboard, traces), and which are off; an
/// agent's plan carries no manifests, so it has no such line.
#[test]
fn plan_command_lists_the_base_services_on_and_off() {
    let c = example();
    let out = piimg(&c, &["plan", "--profile", "control-plane"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("services: "))
        .unwrap_or_else(|| panic!("no `services:` line in the control plane's plan:\n{text}"));
    assert_eq!(
        line,
        "services: minio, postgresql (cloudnative-pg, postgresql 16), mlflow, jupyterhub, \
         monitoring (prometheus, alertmanager, grafana, node-exporter, dashboard \"Cluster nodes\"), \
         dask, ray (kuberay, raycluster), jaeger (traces), otel-collector (otlp to jaeger and prometheus), \
         logs (loki, alloy); off: none"
    );

    c.edit("cluster.toml", |t| {
        t.replace("[services]\n", "[services]\nray = false\nlogs = false\n")
    });
    let out = piimg(&c, &["plan", "--profile", "control-plane"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("services: ")).unwrap();
    assert!(
        line.ends_with("; off: ray, logs") && !line.contains("loki") && !line.contains("kuberay"),
        "{line}"
    );

    let out = piimg(&c, &["plan", "--profile", "worker-2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("services: ")),
        "an agent's plan lists services:\n{text}"
    );
}

#[test]
fn secrets_init_command_makes_0600_and_refuses_to_overwrite() {
    let c = example();
    let path = c.profiles.join("secrets.toml");
    fs::remove_file(&path).unwrap();
    let out = piimg(&c, &["secrets", "init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = fs::read(&path).unwrap();
    let again = piimg(&c, &["secrets", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(fs::read(&path).unwrap(), before);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let refused = piimg(&c, &["plan", "--profile", "worker-1"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("secrets.toml") && err.contains("chmod 600"),
        "{err}"
    );
    let stdout_and_err = format!("{}{}", String::from_utf8_lossy(&refused.stdout), err);
    let text = String::from_utf8(before).unwrap();
    let token = text
        .lines()
        .find(|l| l.starts_with("k3s_token"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap();
    assert!(!stdout_and_err.contains(token));
}

#[test]
fn plan_command_reports_every_node_problem_at_once() {
    let c = example();
    c.edit("worker-1.toml", |t| t.replace("raspios-bookworm", "nope"));
    c.edit("control-plane.toml", |t| {
        t.replace("role = \"server\"", "role = \"server\"\nhostname = \"CP\"")
    });
    let out = piimg(&c, &["plan", "--all"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("worker-1.toml: key `base`")
            && err.contains("control-plane.toml: key `hostname`"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no plan printed when a profile is bad"
    );
}

#[test]
fn cluster_file_problems_come_together() {
    let c = example();
    c.edit("cluster.toml", |t| {
        t.replacen("sha256 = \"", "sha256 = \"NOTHEX", 1)
            .replace("node = \"control-plane\"", "node = \"boss\"")
            .replace("version = \"v1.31.4+k3s1\"", "version = \"v1.99.0+k3s1\"")
            .replace("\"worker-4\"]", "\"worker-4\", \"worker-4\"]")
    });
    fs::write(
        c.profiles.join("stray.toml"),
        "role = \"agent\"\nbase = \"raspios-bookworm\"\n",
    )
    .unwrap();
    let err = resolve(&c.profiles, "stray", &Overrides::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "k3s.releases.\"v1.31.4+k3s1\".amd64.sha256",
        "server.node",
        "k3s.version",
        "nodes[5]",
        "nodes",
    ] {
        assert!(keys.contains(&key), "no `{key}` in:\n{err}");
    }
    assert!(err.0.iter().all(|e| !e.fix.is_empty()), "{err}");
}

#[test]
fn build_id_follows_content_not_location() {
    let a = example();
    let b = example();
    // Same profiles, other folders, other secrets: only the secrets differ, and they are not
    // part of the profile digest.
    let ov = |c: &Cluster| {
        let dir = c.profiles.join("../overlays/common/etc");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("motd"), "hello\n").unwrap();
    };
    ov(&a);
    ov(&b);
    let id = |c: &Cluster| c.plan("worker-1", &Overrides::default()).build_id;
    assert_eq!(id(&a), id(&b));
    fs::write(b.profiles.join("../overlays/common/etc/motd"), "changed\n").unwrap();
    assert_ne!(id(&a), id(&b), "an overlay change changes the build id");
}
