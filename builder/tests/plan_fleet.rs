//! Fleet images planned from the example cluster (`[fleets.bookworm-workers]`: worker-1 by its
//! serial, worker-2 by its MAC), without images: what the image shares, what each board writes
//! at first boot, and the members that cannot share one image, refused with the reason.

use piimg::build::Job;
use piimg::plan::fleet::compute;
use piimg::plan::{Content, Edit, Plan};
use piimg::secrets;
use piimg::spec::{resolve_fleet, FleetSpec, Overrides};
use piimg::verb::inputs_for_plan;
use piimg_firstboot::fleet::{BoardMatch, Entry, FleetConfig, MemberFiles};
use std::fs;
use std::process::Command;

mod example;
use example::{example, Example};

const FLEET: &str = "bookworm-workers";

fn fleet(c: &Example) -> FleetSpec {
    resolve_fleet(&c.profiles, FLEET, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn plan(c: &Example) -> Result<Plan, String> {
    let f = resolve_fleet(&c.profiles, FLEET, &Overrides::default()).map_err(|e| e.to_string())?;
    let inputs = inputs_for_plan(&f.members[0], Vec::new()).unwrap();
    compute(&f, &inputs).map_err(|e| e.to_string())
}

fn edit(c: &Example, file: &str, f: impl FnOnce(String) -> String) {
    let p = c.profiles.join(file);
    fs::write(&p, f(fs::read_to_string(&p).unwrap())).unwrap();
}

fn secret_file(plan: &Plan, path: &str) -> String {
    plan.edits
        .iter()
        .find_map(|e| match e {
            Edit::WriteFile {
                path: p,
                content: Content::Secret(s),
                mode: 0o600,
                ..
            } if p == path => Some(s.expose().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path}: no secret 0600 file in the plan"))
}

fn writes(plan: &Plan, path: &str) -> bool {
    plan.edits
        .iter()
        .any(|e| matches!(e, Edit::WriteFile { path: p, .. } if p == path))
}

#[test]
fn the_image_shares_what_members_share_and_carries_each_members_own_files() {
    let c = example();
    let p = plan(&c).unwrap();
    assert_eq!(p.node, FLEET);
    // Shared: k3s, first boot, the boot settings, the user; and the fleet's own files.
    assert!(writes(&p, "/usr/local/bin/k3s"));
    assert!(writes(&p, "/etc/systemd/system/piimg-firstboot.service"));
    assert!(writes(&p, "/etc/systemd/system/piimg-identify.service"));
    assert!(p.edits.contains(&Edit::EnableUnit {
        unit: "piimg-identify.service".into(),
        unit_dir: "/etc/systemd/system".into(),
        wanted_by: "sysinit.target".into(),
    }));
    assert!(p
        .edits
        .iter()
        .any(|e| matches!(e, Edit::EnsureCmdlineParams { .. })));
    // What makes a board a node is not in the image until first boot writes it.
    for own in [
        "/etc/piimg/node.toml",
        "/etc/rancher/k3s/config.yaml",
        "/etc/rancher/node/password",
        "/etc/NetworkManager/system-connections/piimg-wired.nmconnection",
    ] {
        assert!(!writes(&p, own), "{own} is written into the shared image");
    }
    // Until then the board is called by the fleet's name.
    assert!(p.edits.contains(&Edit::WriteFile {
        path: "/etc/hostname".into(),
        content: Content::Text(format!("{FLEET}\n")),
        mode: 0o644,
        uid: 0,
        gid: 0,
    }));
    assert!(p
        .edits
        .iter()
        .any(|e| matches!(e, Edit::EditHosts { hostname, entries } if hostname == FLEET && !entries.is_empty())));

    // The table: each member and its board; the report key for an unmatched board.
    let table = FleetConfig::from_toml(&secret_file(&p, "/etc/piimg/fleet.toml")).unwrap();
    assert_eq!(table.fleet, FLEET);
    assert_eq!(table.build_id, p.build_id);
    let boards: Vec<(&str, &BoardMatch)> = table
        .members
        .iter()
        .map(|m| (m.node.as_str(), &m.board))
        .collect();
    assert_eq!(
        boards,
        [
            ("worker-1", &BoardMatch::Serial("10000000d83a0001".into())),
            ("worker-2", &BoardMatch::Mac("d8:3a:dd:00:00:02".into())),
        ]
    );
    assert_eq!(table.report.key, c.secrets.report_key.expose());

    // Each member's files: its node config, k3s config and password; worker-2 its address.
    for (node, extra) in [("worker-1", None), ("worker-2", Some("192.168.1.12/24"))] {
        let files =
            MemberFiles::from_toml(&secret_file(&p, &format!("/etc/piimg/fleet/{node}.toml")))
                .unwrap();
        assert_eq!((files.node.as_str(), files.hostname.as_str()), (node, node));
        let content = |path: &str| {
            files.entries.iter().find_map(|e| match e {
                Entry::File {
                    path: p,
                    content,
                    mode,
                    ..
                } if p == path => Some((content.clone(), mode.clone())),
                _ => None,
            })
        };
        let (node_toml, mode) = content("/etc/piimg/node.toml").unwrap();
        assert_eq!(mode, "0600");
        assert!(node_toml.contains(&format!("node = \"{node}\"")));
        assert!(node_toml.contains(&format!("build_id = \"{}\"", p.build_id)));
        let (k3s, _) = content("/etc/rancher/k3s/config.yaml").unwrap();
        assert!(k3s.contains(&format!("node-name: \"{node}\"")), "{k3s}");
        let (password, mode) = content("/etc/rancher/node/password").unwrap();
        assert_eq!(mode, "0600");
        let expected = secrets::node_password(&c.secrets.node_password_seed, node);
        assert_eq!(password.trim(), expected.expose());
        let nm = content("/etc/NetworkManager/system-connections/piimg-wired.nmconnection");
        match extra {
            Some(address) => assert!(nm.unwrap().0.contains(address)),
            None => assert!(nm.is_none(), "worker-1 uses DHCP"),
        }
    }
    // `piimg plan` lists each member's first-boot edits, secrets masked.
    let shown = p.to_string();
    assert!(
        shown.contains("member worker-2 (mac d8:3a:dd:00:00:02): at first boot"),
        "{shown}"
    );
    assert!(!shown.contains(c.secrets.report_key.expose()));
    assert!(
        !shown.contains(secrets::node_password(&c.secrets.node_password_seed, "worker-1").expose())
    );
}

#[test]
fn plan_and_its_json_show_the_fleet_and_no_secret() {
    let c = example();
    let run = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_piimg"));
        cmd.args(["plan", "--fleet", FLEET, "--profiles"])
            .arg(&c.profiles);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (text, json) = (run(false), run(true));
    assert!(text.starts_with(&format!("plan for {FLEET} ")), "{text}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["members"][0]["node"], "worker-1");
    let s = &c.secrets;
    for secret in [&s.agent_token, &s.report_key, &s.node_password_seed] {
        assert!(!text.contains(secret.expose()) && !json.contains(secret.expose()));
    }
    for n in ["worker-1", "worker-2"] {
        let pw = secrets::node_password(&s.node_password_seed, n);
        assert!(!text.contains(pw.expose()) && !json.contains(pw.expose()));
    }
}

#[test]
fn the_fleet_build_id_follows_its_members() {
    let c = example();
    let before = plan(&c).unwrap().build_id;
    assert_eq!(plan(&c).unwrap().build_id, before, "deterministic");
    edit(&c, "worker-2.toml", |t| t.replace("\"fast\"", "\"slow\""));
    assert_ne!(plan(&c).unwrap().build_id, before);
}

#[test]
fn members_that_cannot_share_one_image_are_refused_with_the_setting_named() {
    // A kernel parameter only one member has: one boot partition cannot hold both.
    let c = example();
    edit(&c, "worker-2.toml", |t| {
        t + "\n[kernel]\ncmdline_extra = [\"usb-storage.quirks=152d:0578:u\"]\n"
    });
    let err = plan(&c).unwrap_err();
    assert!(
        err.contains("worker-1 and worker-2 differ in boot:cmdline.txt")
            && err.contains("one boot partition")
            && err.contains("--profile"),
        "{err}"
    );

    // Another base.
    let c = example();
    edit(&c, "worker-2.toml", |t| {
        t.replace(
            "extends = \"worker-1\"",
            "extends = \"worker-1\"\nbase = \"raspios-trixie\"",
        )
    });
    let err = plan(&c).unwrap_err();
    assert!(
        err.contains("worker-2.toml") && err.contains("base is raspios-trixie"),
        "{err}"
    );

    // Another login user: made at build time.
    let c = example();
    edit(&c, "worker-2.toml", |t| {
        t.replace(
            "extends = \"worker-1\"",
            "extends = \"worker-1\"\nuser = \"ops\"",
        )
    });
    let err = plan(&c).unwrap_err();
    assert!(
        err.contains("the login user") && err.contains("when the image is built"),
        "{err}"
    );
}

#[test]
fn a_fleet_needs_agents_each_with_a_board_of_its_own() {
    let c = example();
    edit(&c, "cluster.toml", |t| {
        t.replace(
            "nodes = [\"worker-1\", \"worker-2\"]",
            "nodes = [\"worker-1\", \"worker-2\", \"worker-4\", \"control-plane\"]",
        )
    });
    edit(&c, "worker-2.toml", |t| {
        t.replace(
            "mac = \"d8:3a:dd:00:00:02\"",
            "serial = \"0x10000000d83a0001\"",
        )
    });
    let err = resolve_fleet(&c.profiles, FLEET, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("worker-4 names no board") && err.contains("match = {"),
        "{err}"
    );
    assert!(err.contains("control-plane is the server"), "{err}");
    assert!(
        err.contains("base is ubuntu-amd64") || err.contains("base is ubuntu-raspi"),
        "{err}"
    );

    let c = example();
    edit(&c, "worker-2.toml", |t| {
        t.replace(
            "mac = \"d8:3a:dd:00:00:02\"",
            "serial = \"10000000D83A0001\"",
        )
    });
    let err = resolve_fleet(&c.profiles, FLEET, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker-1 and worker-2 both match"), "{err}");

    let c = example();
    edit(&c, "worker-2.toml", |t| {
        t.replace("d8:3a:dd:00:00:02", "d8:3a:dd")
    });
    let err = resolve_fleet(&c.profiles, FLEET, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("worker-2.toml") && err.contains("not a MAC address"),
        "{err}"
    );

    let c = example();
    let err = resolve_fleet(&c.profiles, "nope", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no fleet `nope` (fleets: bookworm-workers)"),
        "{err}"
    );
}

#[test]
fn the_build_job_names_the_image_after_the_fleet() {
    let c = example();
    let job = Job::Fleet(fleet(&c));
    assert_eq!(job.name(), FLEET);
    assert_eq!(job.sources().node, "worker-1");
}
