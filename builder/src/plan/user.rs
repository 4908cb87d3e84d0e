//! Creating the login user by editing the account files, as `useradd` would, without running it.

use serde::Serialize;

/// The four account files, as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserDb {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/group`.
    pub group: String,
    /// `/etc/shadow`.
    pub shadow: String,
    /// `/etc/gshadow` (empty when the base has none: left empty).
    pub gshadow: String,
}

/// The user to ensure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// uid, and gid of its own primary group of the same name.
    pub uid: u32,
    /// Home folder.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Supplementary groups; those the base lacks are skipped.
    pub groups: Vec<String>,
}

fn join(lines: Vec<String>) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// The base's user that [`ensure_user`] renames to `user`: another name holding `user`'s
/// uid (Raspberry Pi OS's `pi`, uid 1000), with its home folder, when `user` is not there yet.
pub fn renamed_user(db: &UserDb, user: &UserSpec) -> Option<(String, String)> {
    let uid = user.uid.to_string();
    let fields = |l: &str| l.split(':').map(str::to_string).collect::<Vec<_>>();
    let lines: Vec<Vec<String>> = db.passwd.lines().map(fields).collect();
    if lines.iter().any(|f| f.first() == Some(&user.name)) {
        return None;
    }
    lines
        .into_iter()
        .find(|f| f.len() >= 6 && f[2] == uid)
        .map(|f| (f[0].clone(), f[5].clone()))
}

/// What Raspberry Pi OS's own rename does to the other files naming the user
/// (RPi-Distro/userconf-pi `userconf`, `rename_user`, at its 0.9 release, ca2620a):
/// `/etc/subuid` and `/etc/subgid` lines `OLD:` become `NEW:`, and in
/// `/etc/sudoers.d/010_pi-nopasswd` (shipped by pi-gen, `stage2/01-sys-tweaks/01-run.sh` at
/// `2024-11-19-raspios-bookworm-arm64`) a line starting `OLD ` starts `NEW `. Other lines kept.
pub fn rename_in_lines(text: &str, old: &str, new: &str, separator: char) -> String {
    let prefix = format!("{old}{separator}");
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix(&prefix) {
            Some(rest) => out.push(format!("{new}{separator}{rest}")),
            None => out.push(line.to_string()),
        }
    }
    join(out)
}

/// The sudoers drop-in Raspberry Pi OS gives its first user (see [`rename_in_lines`]).
pub const PI_SUDOERS: &str = "/etc/sudoers.d/010_pi-nopasswd";

/// Ensures `user` in `db`. A different user already holding the uid (Raspberry Pi OS's
/// placeholder first user, which its first-boot wizard would rename) is renamed to ours, in
/// every file and group list, which is what the wizard itself does. Idempotent.
pub fn ensure_user(db: &UserDb, user: &UserSpec) -> UserDb {
    let uid = user.uid.to_string();
    let name = user.name.as_str();
    let mut old_name: Option<String> = None;

    // passwd
    let pw_line = format!("{name}:x:{uid}:{uid}::{}:{}", user.home, user.shell);
    let mut lines: Vec<String> = db.passwd.lines().map(str::to_string).collect();
    let by_name = lines.iter().position(|l| l.split(':').next() == Some(name));
    let by_uid = lines
        .iter()
        .position(|l| l.split(':').nth(2) == Some(uid.as_str()));
    match (by_name, by_uid) {
        (Some(i), _) => lines[i] = pw_line,
        (None, Some(i)) => {
            old_name = lines[i].split(':').next().map(str::to_string);
            lines[i] = pw_line;
        }
        (None, None) => lines.push(pw_line),
    }
    let passwd = join(lines);

    let rename = |member: &str| -> String {
        match &old_name {
            Some(old) if member == old => name.to_string(),
            _ => member.to_string(),
        }
    };
    // group and gshadow share the shape name:pw:(gid|admins):members.
    let groups_file = |text: &str, own_line: String, gid_field: Option<&str>| -> String {
        if text.is_empty() {
            return String::new();
        }
        let mut have_own = false;
        let mut out: Vec<String> = Vec::new();
        for line in text.lines() {
            let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
            if f.len() < 4 {
                out.push(line.to_string());
                continue;
            }
            let gname = rename(&f[0]);
            if gname == name
                || gid_field
                    .is_some_and(|g| f[2] == g && old_name.as_deref() == Some(f[0].as_str()))
            {
                if !have_own {
                    out.push(own_line.clone());
                    have_own = true;
                }
                continue;
            }
            let mut members: Vec<String> = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(rename)
                .collect();
            if user.groups.contains(&f[0]) && !members.iter().any(|m| m == name) {
                members.push(name.to_string());
            }
            let mut seen = Vec::new();
            members.retain(|m| {
                let fresh = !seen.contains(m);
                seen.push(m.clone());
                fresh
            });
            f[3] = members.join(",");
            out.push(f.join(":"));
        }
        if !have_own {
            out.push(own_line);
        }
        join(out)
    };
    let group = groups_file(&db.group, format!("{name}:x:{uid}:"), Some(uid.as_str()));
    let gshadow = groups_file(&db.gshadow, format!("{name}:!::"), None);

    // shadow: no password (`*`): login by SSH key only.
    let sh_line = format!("{name}:*::0:99999:7:::");
    let mut out: Vec<String> = Vec::new();
    let mut have = false;
    for line in db.shadow.lines() {
        let n = line.split(':').next().unwrap_or("");
        if n == name || old_name.as_deref() == Some(n) {
            if !have {
                out.push(sh_line.clone());
                have = true;
            }
            continue;
        }
        out.push(line.to_string());
    }
    if !have {
        out.push(sh_line);
    }
    UserDb {
        passwd,
        group,
        shadow: join(out),
        gshadow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UserSpec {
        UserSpec {
            name: "admin".into(),
            uid: 1000,
            home: "/home/admin".into(),
            shell: "/bin/bash".into(),
            groups: vec!["sudo".into(), "video".into(), "nosuchgroup".into()],
        }
    }

    fn pi_db() -> UserDb {
        UserDb {
            passwd: "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n"
                .into(),
            group: "root:x:0:\nsudo:x:27:pi\nvideo:x:44:pi\npi:x:1000:\n".into(),
            shadow: "root:*:19000:0:99999:7:::\npi:!:19000:0:99999:7:::\n".into(),
            gshadow: "root:*::\nsudo:*::pi\nvideo:*::pi\npi:!::\n".into(),
        }
    }

    #[test]
    fn renames_the_placeholder_user_everywhere() {
        let out = ensure_user(&pi_db(), &spec());
        for text in [&out.passwd, &out.group, &out.shadow, &out.gshadow] {
            assert!(
                !text.contains("pi:") && !text.contains(",pi") && !text.contains(":pi\n"),
                "{text}"
            );
        }
        assert!(out
            .passwd
            .contains("admin:x:1000:1000::/home/admin:/bin/bash\n"));
        assert!(out.group.contains("sudo:x:27:admin\n") && out.group.contains("admin:x:1000:\n"));
        assert!(out.shadow.contains("admin:*::0:99999:7:::\n"));
        assert!(out.passwd.starts_with("root:x:0:0"));
    }

    #[test]
    fn the_renamed_user_and_its_other_files() {
        assert_eq!(
            renamed_user(&pi_db(), &spec()),
            Some(("pi".into(), "/home/pi".into()))
        );
        let once = ensure_user(&pi_db(), &spec());
        assert_eq!(renamed_user(&once, &spec()), None, "already renamed");
        let subuid = "pi:100000:65536\npipe:165536:65536\n";
        assert_eq!(
            rename_in_lines(subuid, "pi", "admin", ':'),
            "admin:100000:65536\npipe:165536:65536\n"
        );
        assert_eq!(
            rename_in_lines("pi ALL=(ALL) NOPASSWD: ALL\n", "pi", "admin", ' '),
            "admin ALL=(ALL) NOPASSWD: ALL\n"
        );
    }

    #[test]
    fn appends_on_a_base_without_the_uid_and_is_idempotent() {
        let db = UserDb {
            passwd: "root:x:0:0:root:/root:/bin/bash\n".into(),
            group: "root:x:0:\nsudo:x:27:\n".into(),
            shadow: "root:*:19000:0:99999:7:::\n".into(),
            gshadow: String::new(),
        };
        let once = ensure_user(&db, &spec());
        assert!(once.group.contains("sudo:x:27:admin\n"));
        assert_eq!(once.gshadow, "");
        assert_eq!(ensure_user(&once, &spec()), once);
        let pi_once = ensure_user(&pi_db(), &spec());
        assert_eq!(ensure_user(&pi_once, &spec()), pi_once);
    }
}
