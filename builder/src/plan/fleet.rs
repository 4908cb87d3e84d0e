//! A fleet's plan: one image that every member's board boots.
//!
//! Each member's own plan is computed as for its own image (under the fleet's build id), then
//! the plans are laid side by side, target by target (a file's path, a boot setting, a unit's
//! link): what every member does alike goes into the image; what differs stays each member's,
//! written into the image as [`MemberFiles`] that first boot applies once the board has taken
//! its node ([`piimg_firstboot::identify`]). Only what can wait for first boot may differ:
//! plain files, folders, symlinks and removals, and the hostname. A boot-partition setting,
//! fstab, the login user or a systemd unit are read before first boot runs, so members that
//! differ in one are refused, naming the members and the setting.

use super::compute::compute_as;
use super::edit::{Content, Edit};
use super::{Inputs, Plan, BUILD_RECORD_PATH};
use crate::secrets::Secret;
use crate::spec::{FleetSpec, NodeSpec};
use piimg_firstboot::config::ReportConfig;
use piimg_firstboot::fleet::{
    BoardMatch, Entry, FleetConfig, Member, MemberFiles, FLEET_CONFIG_PATH, FLEET_SCHEMA,
    MEMBERS_DIR,
};
use piimg_firstboot::unit::{IDENTIFY_UNIT, IDENTIFY_UNIT_NAME};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// One member of a fleet image, as `piimg plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberPlan {
    /// The node.
    pub node: String,
    /// Its board.
    pub board: BoardMatch,
    /// What its board writes at first boot, in order (secrets masked when shown).
    pub edits: Vec<Edit>,
}

/// Members that cannot share one image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet `{fleet}`: {nodes} differ in {target} ({shown}): {why}; {fix}")]
pub struct FleetPlanError {
    /// The fleet.
    pub fleet: String,
    /// The members whose setting differs, `a and b`.
    pub nodes: String,
    /// What differs.
    pub target: String,
    /// Each member's version of it.
    pub shown: String,
    /// Why it cannot differ.
    pub why: &'static str,
    /// What to do.
    pub fix: &'static str,
}

/// What an edit is about: two edits with the same target set the same thing.
fn target(edit: &Edit) -> String {
    match edit {
        Edit::EnsureCmdlineParams { file, .. } => format!("boot:{file}"),
        Edit::SetConfigTxt {
            file, section, key, ..
        } => format!("boot:{file} [{section}] {key}"),
        Edit::WriteBootFile { path, .. } => format!("boot:{path}"),
        Edit::WriteFile { path, .. }
        | Edit::Mkdir { path, .. }
        | Edit::Symlink { path, .. }
        | Edit::Remove { path } => path.clone(),
        Edit::EnableUnit { .. } | Edit::MaskUnit { .. } => {
            edit.enable_link().map(|(link, _)| link).unwrap_or_default()
        }
        Edit::EditFstab { .. } => "/etc/fstab".into(),
        Edit::EditHosts { .. } => "/etc/hosts".into(),
        Edit::EnsureUser(_) => "the login user".into(),
    }
}

/// Why an edit cannot wait for first boot, if it cannot.
fn must_be_shared(edit: &Edit) -> Option<(&'static str, &'static str)> {
    const UNIT_DIRS: [&str; 3] = ["/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/"];
    let fix = "give the members the same setting, or build this node on its own with `--profile`";
    match edit {
        e if e.is_boot() => Some(("a fleet image has one boot partition", fix)),
        Edit::EditFstab { .. } => Some(("fstab is read before first boot takes the node", fix)),
        Edit::EnsureUser(_) => Some(("the login user is made when the image is built", fix)),
        Edit::EnableUnit { .. } | Edit::MaskUnit { .. } => Some((
            "systemd reads its units before first boot takes the node",
            fix,
        )),
        Edit::WriteFile { path, .. } | Edit::Symlink { path, .. } | Edit::Remove { path }
            if UNIT_DIRS.iter().any(|d| path.starts_with(d)) =>
        {
            Some((
                "systemd reads its units before first boot takes the node",
                fix,
            ))
        }
        Edit::WriteFile {
            content: Content::Source { .. },
            ..
        } => Some((
            "a file copied from a source is baked into the image, not carried per node",
            "give the members the same file, or write it with `content`",
        )),
        _ => None,
    }
}

/// The edit as an entry a board writes at first boot.
fn entry(edit: &Edit) -> Option<Entry> {
    Some(match edit {
        Edit::WriteFile {
            path,
            content,
            mode,
            uid,
            gid,
        } => Entry::File {
            path: path.clone(),
            mode: format!("{mode:04o}"),
            uid: *uid,
            gid: *gid,
            content: match content {
                Content::Text(t) => t.clone(),
                Content::Secret(s) => s.expose().to_string(),
                Content::Source { .. } => return None,
            },
        },
        Edit::Mkdir {
            path,
            mode,
            uid,
            gid,
        } => Entry::Dir {
            path: path.clone(),
            mode: format!("{mode:04o}"),
            uid: *uid,
            gid: *gid,
        },
        Edit::Symlink { path, target } => Entry::Symlink {
            path: path.clone(),
            target: target.clone(),
        },
        Edit::Remove { path } => Entry::Remove { path: path.clone() },
        _ => return None,
    })
}

/// The fleet's profile digest: its name and every member's, with its board.
fn fleet_profile_sha256(fleet: &FleetSpec) -> String {
    let mut h = Sha256::new();
    h.update(format!("fleet\0{}\n", fleet.name));
    for m in &fleet.members {
        let board = m
            .board
            .as_ref()
            .map(BoardMatch::describe)
            .unwrap_or_default();
        h.update(format!("{}\0{}\0{board}\n", m.node, m.profile_sha256));
    }
    hex::encode(h.finalize())
}

fn member_names(members: &[&NodeSpec]) -> String {
    match members {
        [one] => one.node.clone(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(|m| m.node.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last.node
        ),
        [] => String::new(),
    }
}

/// Computes the fleet image's plan with the resolved `inputs` (those of its first member: the
/// members share base, arch and k3s version). Pure: no I/O, no clock.
pub fn compute(fleet: &FleetSpec, inputs: &Inputs) -> Result<Plan, Box<FleetPlanError>> {
    let first = fleet.members.first().expect("a resolved fleet has members");
    let build_id = inputs.build_id(&fleet_profile_sha256(fleet));
    let plans: Vec<Plan> = fleet
        .members
        .iter()
        .map(|m| compute_as(m, inputs, build_id.clone()))
        .collect();
    // Targets in the order they first appear; per member, its edits of each target in order.
    let mut targets: Vec<String> = Vec::new();
    let mut by_member: Vec<std::collections::BTreeMap<String, Vec<Edit>>> = Vec::new();
    for plan in &plans {
        let mut mine: std::collections::BTreeMap<String, Vec<Edit>> = Default::default();
        for e in &plan.edits {
            let t = target(e);
            if t == BUILD_RECORD_PATH {
                continue; // the fleet writes its own record
            }
            if !targets.contains(&t) {
                targets.push(t.clone());
            }
            mine.entry(t).or_default().push(e.clone());
        }
        by_member.push(mine);
    }
    let mut shared: Vec<Edit> = Vec::new();
    let mut own: Vec<Vec<Edit>> = vec![Vec::new(); plans.len()];
    for t in &targets {
        let seqs: Vec<Option<&Vec<Edit>>> = by_member.iter().map(|m| m.get(t)).collect();
        let alike = seqs.iter().all(|s| s.is_some() && *s == seqs[0]);
        if alike {
            shared.extend(seqs[0].into_iter().flatten().cloned());
            continue;
        }
        // The first member and every one that does otherwise.
        let differing: Vec<&NodeSpec> = fleet
            .members
            .iter()
            .zip(&seqs)
            .enumerate()
            .filter(|(i, (_, s))| *i == 0 || *s != &seqs[0])
            .map(|(_, (m, _))| m)
            .collect();
        let shown = || {
            fleet
                .members
                .iter()
                .zip(&seqs)
                .map(|(m, s)| {
                    let what = s.map_or("nothing".to_string(), |s| {
                        s.iter()
                            .map(|e| format!("`{e}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    });
                    format!("{}: {what}", m.node)
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let refuse = |why: &'static str, fix: &'static str| {
            Box::new(FleetPlanError {
                fleet: fleet.name.clone(),
                nodes: member_names(&differing),
                target: t.clone(),
                shown: shown(),
                why,
                fix,
            })
        };
        if t == "/etc/hosts" {
            // The hostname differs (first boot sets each board's); the rest must not.
            let entries: Vec<Option<&Vec<crate::spec::HostsEntry>>> = seqs
                .iter()
                .map(|s| match s.map(Vec::as_slice) {
                    Some([Edit::EditHosts { entries, .. }]) => Some(entries),
                    _ => None,
                })
                .collect();
            if entries.iter().any(|e| e.is_none() || *e != entries[0]) {
                return Err(refuse(
                    "/etc/hosts is shared but for each node's own name",
                    "give the members the same server name and address",
                ));
            }
            shared.push(Edit::EditHosts {
                hostname: fleet.name.clone(),
                entries: entries[0].cloned().unwrap_or_default(),
            });
            continue;
        }
        for seq in seqs.iter().flatten() {
            if let Some((why, fix)) = seq.iter().find_map(must_be_shared) {
                return Err(refuse(why, fix));
            }
        }
        if t == "/etc/hostname" {
            // Until a board has taken its node, it is called by the fleet's name.
            shared.push(Edit::WriteFile {
                path: t.clone(),
                content: Content::Text(format!("{}\n", fleet.name)),
                mode: 0o644,
                uid: 0,
                gid: 0,
            });
        }
        for (mine, seq) in own.iter_mut().zip(&seqs) {
            if let Some(seq) = seq {
                mine.extend(seq.iter().cloned());
            }
        }
    }
    shared.extend(fleet_files(fleet, &build_id, &own));
    shared.push(Edit::WriteFile {
        path: BUILD_RECORD_PATH.into(),
        content: Content::Text(build_record(fleet, inputs, &build_id)),
        mode: 0o644,
        uid: 0,
        gid: 0,
    });
    Ok(Plan {
        node: fleet.name.clone(),
        base: first.base.name.clone(),
        flavour: first.base.flavour(),
        build_id,
        source_date_epoch: first.overrides.source_date_epoch,
        edits: shared,
        // Agents only: no base services.
        services: None,
        members: fleet
            .members
            .iter()
            .zip(own)
            .map(|(m, edits)| MemberPlan {
                node: m.node.clone(),
                board: m
                    .board
                    .clone()
                    .expect("a resolved fleet's members have boards"),
                edits,
            })
            .collect(),
    })
}

/// The fleet table, each member's files (0600: they hold node passwords and the report key),
/// and the unit that applies them.
fn fleet_files(fleet: &FleetSpec, build_id: &str, own: &[Vec<Edit>]) -> Vec<Edit> {
    let first = &fleet.members[0];
    let secret = |path: String, text: String| Edit::WriteFile {
        path,
        content: Content::Secret(Secret::new(text)),
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    let mut e = vec![Edit::Mkdir {
        path: MEMBERS_DIR.into(),
        mode: 0o700,
        uid: 0,
        gid: 0,
    }];
    for (m, edits) in fleet.members.iter().zip(own) {
        let files = MemberFiles {
            schema: FLEET_SCHEMA,
            node: m.node.clone(),
            hostname: m.hostname.clone(),
            entries: edits.iter().filter_map(entry).collect(),
        };
        e.push(secret(
            format!("{MEMBERS_DIR}/{}.toml", m.node),
            files.to_toml(),
        ));
    }
    let table = FleetConfig {
        schema: FLEET_SCHEMA,
        fleet: fleet.name.clone(),
        cluster: first.cluster.clone(),
        build_id: build_id.to_string(),
        k3s_version: first.k3s.version.clone(),
        report: ReportConfig {
            url: first.report_url.clone(),
            key: first.secrets.report_key.expose().to_string(),
        },
        members: fleet
            .members
            .iter()
            .map(|m| Member {
                node: m.node.clone(),
                board: m
                    .board
                    .clone()
                    .expect("a resolved fleet's members have boards"),
            })
            .collect(),
    };
    e.push(secret(FLEET_CONFIG_PATH.into(), table.to_toml()));
    e.push(Edit::WriteFile {
        path: format!("/etc/systemd/system/{IDENTIFY_UNIT_NAME}"),
        content: Content::Text(IDENTIFY_UNIT.into()),
        mode: 0o644,
        uid: 0,
        gid: 0,
    });
    e.push(Edit::EnableUnit {
        unit: IDENTIFY_UNIT_NAME.into(),
        unit_dir: "/etc/systemd/system".into(),
        wanted_by: "sysinit.target".into(),
    });
    e
}

/// `/etc/piimg/build.json` of a fleet image: what was baked, by digest, and its members.
fn build_record(fleet: &FleetSpec, inputs: &Inputs, build_id: &str) -> String {
    let first = &fleet.members[0];
    let members: Vec<serde_json::Value> = fleet
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "node": m.node,
                "match": m.board,
                "profile_sha256": m.profile_sha256,
            })
        })
        .collect();
    let record = serde_json::json!({
        "piimg_version": env!("CARGO_PKG_VERSION"),
        "build_id": build_id,
        "cluster": first.cluster,
        "fleet": fleet.name,
        "members": members,
        "profile_sha256": fleet_profile_sha256(fleet),
        "base": { "name": first.base.name, "sha256": inputs.base_sha256 },
        "k3s": { "version": first.k3s.version, "sha256": inputs.k3s_bin.sha256 },
        "firstboot_sha256": inputs.firstboot_bin.sha256,
        "airgap_images_sha256": inputs.airgap_images.as_ref().map(|a| a.sha256.clone()),
        "source_date_epoch": first.overrides.source_date_epoch,
    });
    let mut s = serde_json::to_string_pretty(&record).unwrap_or_default();
    s.push('\n');
    s
}
