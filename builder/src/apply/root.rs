//! Root-filesystem edits on one read-write ext4 handle. Each edit first compares what is
//! there with what it wants and writes only the difference, so applying a plan to an image
//! it was already applied to writes nothing at all (no rewrite, no timestamp change).

use super::content::{inline, HashWriter, Hashing};
use super::ApplyError;
use crate::fs::ext4::{Ext4, Ext4Error, FileKind, Meta};
use crate::plan::user::{ensure_user, rename_in_lines, renamed_user, UserDb, UserSpec, PI_SUDOERS};
use crate::plan::{Content, Edit};
use std::path::{Path, PathBuf};

/// Mode of folders the apply stage creates on its own (missing parents).
const PARENT_MODE: u32 = 0o755;

/// The open root filesystem and what errors need to name.
pub struct RootEditor {
    fs: Ext4,
    image: PathBuf,
    partition: u32,
    mtime: i64,
}

/// Why one edit failed, before it is given the edit's name.
enum Failure {
    Fs(Ext4Error),
    Apply(Box<ApplyError>),
}

impl From<Ext4Error> for Failure {
    fn from(e: Ext4Error) -> Self {
        Failure::Fs(e)
    }
}

impl RootEditor {
    /// Takes over an ext4 handle opened read-write.
    pub fn new(fs: Ext4, image: &Path, partition: u32, mtime: i64) -> Self {
        RootEditor {
            fs,
            image: image.to_path_buf(),
            partition,
            mtime,
        }
    }

    /// Applies one root edit; returns whether anything was written.
    pub fn apply(&mut self, edit: &Edit) -> Result<bool, ApplyError> {
        self.apply_inner(edit).map_err(|f| match f {
            Failure::Fs(source) => ApplyError::Ext4 {
                image: self.image.clone(),
                partition: self.partition,
                edit: edit.to_string(),
                source: Box::new(source),
            },
            Failure::Apply(e) => *e,
        })
    }

    /// Flushes and closes, surfacing libext2fs' close errors.
    pub fn close(self) -> Result<(), ApplyError> {
        let (image, partition) = (self.image, self.partition);
        self.fs.close().map_err(|source| ApplyError::Ext4 {
            image,
            partition,
            edit: "closing the root filesystem".into(),
            source: Box::new(source),
        })
    }

    fn apply_inner(&mut self, edit: &Edit) -> Result<bool, Failure> {
        if let Some((link, target)) = edit.enable_link() {
            return Ok(self.symlink(&link, &target)?);
        }
        match edit {
            Edit::WriteFile {
                path,
                content,
                mode,
                uid,
                gid,
            } => self.write_file(edit, path, content, *mode, *uid, *gid),
            Edit::Mkdir {
                path,
                mode,
                uid,
                gid,
            } => Ok(self.mkdir(path, *mode, *uid, *gid)?),
            Edit::Symlink { path, target } => Ok(self.symlink(path, target)?),
            Edit::Remove { path } => Ok(self.remove(path)?),
            Edit::EnsureUser(user) => {
                self.refuse_system_account(user)?;
                Ok(self.ensure_user(user)?)
            }
            other => match other.transform("") {
                Some((file, _)) => {
                    let old = self.read_text(&file)?;
                    match other.transform(&old.clone().unwrap_or_default()) {
                        Some((_, new)) => Ok(self.replace_text(&file, old.as_deref(), &new)?),
                        None => Ok(false),
                    }
                }
                None => Ok(false),
            },
        }
    }

    fn meta(&self, mode: u32, uid: u32, gid: u32) -> Meta {
        Meta {
            mode,
            uid,
            gid,
            mtime: self.mtime,
        }
    }

    fn stat(&self, path: &str) -> Result<Option<crate::fs::ext4::Stat>, Ext4Error> {
        match self.fs.lookup(path)? {
            Some(_) => self.fs.stat(path).map(Some),
            None => Ok(None),
        }
    }

    /// Creates the missing folders above `path` as 0755 root:root.
    fn ensure_parent(&mut self, path: &str) -> Result<(), Ext4Error> {
        let parent = match path.rsplit_once('/') {
            Some(("", _)) | None => return Ok(()),
            Some((p, _)) => p,
        };
        let meta = self.meta(PARENT_MODE, 0, 0);
        self.fs.mkdir_p(parent, &meta)
    }

    fn write_file(
        &mut self,
        edit: &Edit,
        path: &str,
        content: &Content,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<bool, Failure> {
        let existing = self.stat(path)?.filter(|s| s.kind == FileKind::File);
        if let Some(st) = &existing {
            if self.same_content(path, st.size, content)? {
                return Ok(self.fix_attrs(path, st, mode, uid, gid)?);
            }
        }
        self.ensure_parent(path)?;
        let meta = self.meta(mode, uid, gid);
        match content {
            Content::Source { path: file, sha256 } => {
                let f = std::fs::File::open(file).map_err(|source| {
                    Failure::Apply(Box::new(ApplyError::SourceRead {
                        image: self.image.clone(),
                        edit: edit.to_string(),
                        file: file.clone(),
                        source,
                    }))
                })?;
                let mut reader = Hashing::new(std::io::BufReader::new(f));
                self.fs.write_file(path, &mut reader, &meta)?;
                let actual = reader.finish();
                if !actual.eq_ignore_ascii_case(sha256) {
                    return Err(Failure::Apply(Box::new(ApplyError::SourceDigest {
                        image: self.image.clone(),
                        edit: edit.to_string(),
                        file: file.clone(),
                        expected: sha256.clone(),
                        actual,
                    })));
                }
            }
            other => {
                let bytes = inline(other).unwrap_or_default();
                self.fs.write_file(path, &mut &bytes[..], &meta)?;
            }
        }
        Ok(true)
    }

    /// Whether the file at `path` (of `size` bytes) already holds `content`.
    fn same_content(&self, path: &str, size: u64, content: &Content) -> Result<bool, Ext4Error> {
        match content {
            Content::Source { sha256, .. } => {
                let mut h = HashWriter::default();
                self.fs.read_file_to(path, &mut h)?;
                Ok(h.finish().eq_ignore_ascii_case(sha256))
            }
            other => {
                let want = inline(other).unwrap_or_default();
                Ok(size == want.len() as u64 && self.fs.read_file(path)? == want)
            }
        }
    }

    /// Sets mode and owner where they differ; returns whether anything changed.
    fn fix_attrs(
        &mut self,
        path: &str,
        st: &crate::fs::ext4::Stat,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<bool, Ext4Error> {
        let mut changed = false;
        if st.mode & 0o7777 != mode & 0o7777 {
            self.fs.chmod(path, mode)?;
            changed = true;
        }
        if (st.uid, st.gid) != (uid, gid) {
            self.fs.chown(path, uid, gid)?;
            changed = true;
        }
        Ok(changed)
    }

    fn mkdir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Result<bool, Ext4Error> {
        if let Some(st) = self.stat(path)?.filter(|s| s.kind == FileKind::Dir) {
            return self.fix_attrs(path, &st, mode, uid, gid);
        }
        self.ensure_parent(path)?;
        let meta = self.meta(mode, uid, gid);
        self.fs.mkdir_p(path, &meta)?;
        Ok(true)
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<bool, Ext4Error> {
        if let Some(st) = self.stat(path)? {
            if st.kind == FileKind::Symlink && self.fs.read_link(path)? == target {
                return Ok(false);
            }
        }
        self.ensure_parent(path)?;
        let meta = self.meta(0o777, 0, 0);
        self.fs.symlink(path, target, &meta)?;
        Ok(true)
    }

    fn remove(&mut self, path: &str) -> Result<bool, Ext4Error> {
        if self.fs.lookup(path)?.is_none() {
            return Ok(false);
        }
        self.fs.unlink(path)?;
        Ok(true)
    }

    /// A text file's content (`None` when it does not exist).
    fn read_text(&self, path: &str) -> Result<Option<String>, Ext4Error> {
        if self.stat(path)?.is_none() {
            return Ok(None);
        }
        let bytes = self.fs.read_file(path)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Writes `new` at `path` if it differs from `old`, keeping the file's mode and owner
    /// (a new file is 0644 root:root).
    fn replace_text(
        &mut self,
        path: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<bool, Ext4Error> {
        if old == Some(new) || (old.is_none() && new.is_empty()) {
            return Ok(false);
        }
        let (mode, uid, gid) = match self.stat(path)? {
            Some(st) => (st.mode & 0o7777, st.uid, st.gid),
            None => (0o644, 0, 0),
        };
        self.ensure_parent(path)?;
        let meta = self.meta(mode, uid, gid);
        self.fs.write_file(path, &mut new.as_bytes(), &meta)?;
        Ok(true)
    }

    /// The spec refuses the well-known system names; this catches the rest: any account of the
    /// base with the login user's name and a uid below 1000.
    fn refuse_system_account(&self, user: &UserSpec) -> Result<(), Failure> {
        let passwd = self.read_text("/etc/passwd")?.unwrap_or_default();
        let uid = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user.name.as_str())).then(|| f.get(2)?.parse::<u32>().ok())?
        });
        match uid {
            Some(uid) if uid < 1000 && uid != user.uid => {
                Err(Failure::Apply(Box::new(ApplyError::SystemAccount {
                    image: self.image.clone(),
                    name: user.name.clone(),
                    uid,
                })))
            }
            _ => Ok(()),
        }
    }

    fn ensure_user(&mut self, user: &UserSpec) -> Result<bool, Ext4Error> {
        const FILES: [&str; 4] = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
        let mut old = Vec::new();
        for f in FILES {
            old.push(self.read_text(f)?);
        }
        let db = UserDb {
            passwd: old[0].clone().unwrap_or_default(),
            group: old[1].clone().unwrap_or_default(),
            shadow: old[2].clone().unwrap_or_default(),
            gshadow: old[3].clone().unwrap_or_default(),
        };
        let renamed = renamed_user(&db, user);
        let new = ensure_user(&db, user);
        let mut changed = false;
        for (i, text) in [new.passwd, new.group, new.shadow, new.gshadow]
            .iter()
            .enumerate()
        {
            changed |= self.replace_text(FILES[i], old[i].as_deref(), text)?;
        }
        if let Some((old_name, old_home)) = renamed {
            changed |= self.finish_rename(&old_name, &old_home, user)?;
        }
        Ok(changed)
    }

    /// The rest of Raspberry Pi OS's own rename of its first user (userconf-pi's `userconf`:
    /// `usermod -m -d` moves the home folder; subuid, subgid and the sudoers drop-in follow the
    /// name), so nothing is left naming a user that no longer exists.
    fn finish_rename(
        &mut self,
        old_name: &str,
        old_home: &str,
        user: &UserSpec,
    ) -> Result<bool, Ext4Error> {
        let mut changed = false;
        for (file, sep) in [
            ("/etc/subuid", ':'),
            ("/etc/subgid", ':'),
            (PI_SUDOERS, ' '),
        ] {
            if let Some(text) = self.read_text(file)? {
                let new = rename_in_lines(&text, old_name, &user.name, sep);
                changed |= self.replace_text(file, Some(&text), &new)?;
            }
        }
        let is_dir = |s: &Self, p: &str| -> Result<bool, Ext4Error> {
            Ok(s.stat(p)?.is_some_and(|st| st.kind == FileKind::Dir))
        };
        if old_home != user.home && is_dir(self, old_home)? && self.stat(&user.home)?.is_none() {
            changed |= self.fs.rename(old_home, &user.home, self.mtime)?;
        }
        Ok(changed)
    }
}
