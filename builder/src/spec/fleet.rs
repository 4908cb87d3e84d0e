//! `[fleets.NAME]` → [`FleetSpec`]: the members resolved like any node, and the rules that let
//! one image carry them all, checked before anything is fetched.
//!
//! One image has one boot partition, one base, one k3s binary and one first-boot set-up, so
//! its members must agree on those; what differs between them (hostname, labels, taints, node
//! password, network address, …) the plan keeps per member ([`crate::plan::fleet`]), and each
//! board takes its own at first boot by its `match`.

use super::{resolve, NodeSpec, Overrides, SpecErrors};
use crate::profile::{self, is_rfc1123_label, ProfileError};
use piimg_firstboot::config::Role;
use std::path::{Path, PathBuf};

/// A fleet, resolved: its name and its members, each with a board.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// `[fleets.NAME]`: the image's name.
    pub name: String,
    /// The members, in the order cluster.toml lists them.
    pub members: Vec<NodeSpec>,
}

/// Resolves fleet `name` of the cluster in `profiles_dir`: every member as a node, then the
/// rules of a fleet. Every problem is reported at once.
pub fn resolve_fleet(
    profiles_dir: &Path,
    name: &str,
    overrides: &Overrides,
) -> Result<FleetSpec, SpecErrors> {
    let lc = profile::load_cluster(profiles_dir).map_err(|e| SpecErrors(vec![e]))?;
    let c = &lc.cluster;
    let key = format!("fleets.{name}");
    let at_cluster = |k: &str, problem: String, fix: &str| {
        ProfileError::new(&lc.file, k.to_string(), problem, fix)
    };
    let Some(section) = c.fleets.get(name) else {
        let known: Vec<&str> = c.fleets.keys().map(String::as_str).collect();
        return Err(SpecErrors(vec![at_cluster(
            &key,
            format!(
                "no fleet `{name}` (fleets: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
            "add `[fleets.NAME]` with `nodes = [\"worker-1\", …]` to cluster.toml",
        )]));
    };
    let mut errors = Vec::new();
    if !is_rfc1123_label(name) {
        errors.push(at_cluster(
            &key,
            format!("`{name}` is not an RFC 1123 label (it names the image and is the boards' hostname until each takes its node)"),
            "use lower-case letters, digits and '-', at most 63",
        ));
    }
    if c.nodes.iter().any(|n| n == name) {
        errors.push(at_cluster(
            &key,
            format!("`{name}` is also a node: both would be out/{name}.img"),
            "give the fleet a name of its own",
        ));
    }
    if section.nodes.is_empty() {
        errors.push(at_cluster(
            &format!("{key}.nodes"),
            "the fleet has no members".into(),
            "list the agent nodes it carries",
        ));
    }
    for (i, n) in section.nodes.iter().enumerate() {
        if section.nodes[..i].contains(n) {
            errors.push(at_cluster(
                &format!("{key}.nodes[{i}]"),
                format!("`{n}` is listed twice"),
                "list each node once",
            ));
        }
    }
    let mut members: Vec<NodeSpec> = Vec::new();
    for node in &section.nodes {
        match resolve(profiles_dir, node, overrides) {
            Ok(s) => members.push(s),
            Err(SpecErrors(e)) => {
                for e in e {
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
    }
    errors.extend(member_rules(name, &members));
    if errors.is_empty() {
        Ok(FleetSpec {
            name: name.to_string(),
            members,
        })
    } else {
        Err(SpecErrors(errors))
    }
}

fn own_file(s: &NodeSpec) -> PathBuf {
    s.profile_files.last().cloned().unwrap_or_default()
}

/// What members must share, and that each board is one member's.
fn member_rules(fleet: &str, members: &[NodeSpec]) -> Vec<ProfileError> {
    let mut errors = Vec::new();
    let Some(first) = members.first() else {
        return errors;
    };
    for (i, m) in members.iter().enumerate() {
        let file = own_file(m);
        if m.role != Role::Agent {
            errors.push(ProfileError::new(
                &file,
                "role",
                format!(
                    "fleet `{fleet}`: {} is the server; a fleet image is for agents",
                    m.node
                ),
                "build the server with `--profile` and leave it out of the fleet",
            ));
        }
        match &m.board {
            None => errors.push(ProfileError::new(
                &file,
                "match",
                format!("fleet `{fleet}`: {} names no board", m.node),
                "add `match = { serial = \"…\" }` or `match = { mac = \"…\" }` (an unmatched board reports both to `piimg watch`)",
            )),
            Some(b) => {
                if let Some(other) = members[..i]
                    .iter()
                    .find(|o| o.board.as_ref().is_some_and(|ob| ob.same_board(b))) {
                    errors.push(ProfileError::new(
                        &file,
                        "match",
                        format!("fleet `{fleet}`: {} and {} both match {}", other.node, m.node, b.describe()),
                        "give each node the serial or MAC of its own board",
                    ));
                }
            }
        }
        let mut differs = |key: &str, what: &str, mine: String, theirs: String| {
            if mine != theirs {
                errors.push(ProfileError::new(
                    &file,
                    key,
                    format!(
                        "fleet `{fleet}`: {}'s {what} is {mine}, {}'s is {theirs}; one image has one {what}",
                        m.node, first.node
                    ),
                    "give the fleet's members the same one, or build this node with `--profile`",
                ));
            }
        };
        differs("base", "base", m.base.name.clone(), first.base.name.clone());
        differs(
            "k3s_version",
            "k3s version",
            m.k3s.version.clone(),
            first.k3s.version.clone(),
        );
        differs(
            "report_url",
            "report URL",
            format!("{:?}", m.report_url),
            format!("{:?}", first.report_url),
        );
    }
    errors
}
