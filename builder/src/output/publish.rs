//! Writes every output of a build into the out folder all-or-nothing: each file goes to a
//! temporary name (mode 0600 from creation, since the image holds the join token), is synced,
//! and only when all are complete are they renamed into place. On any failure every temporary
//! is removed and no file is left at an output path.

use super::compress::{compress_image_to, Format};
use super::error::{read_error, write_error, OutputError};
use super::reuse::{compress_overlay_to, compress_reusing_to, ReuseBase};
use crate::bmap::Bmap;
use crate::image::Overlay;
use crate::image::{clone_into, Side};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::{NamedTempFile, TempPath};

/// What to publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    /// The folder the outputs go to (must exist).
    pub out_dir: &'a Path,
    /// The node name: outputs are `<node>.img[.zst|.xz|.gz]`, `.sha256`, `.bmap`, `.build.json`.
    pub node: &'a str,
    /// The finished raw (sparse) image; only read, except by [`publish_moving`].
    pub image: &'a Path,
    /// The image encoding.
    pub format: Format,
    /// The build record, written as pretty JSON.
    pub build_json: &'a serde_json::Value,
}

/// Where the outputs are, once published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The image file (`<node>.img` or compressed).
    pub image: PathBuf,
    /// SHA-256 of the image file as written (of the compressed bytes when compressed).
    pub image_sha256: String,
    /// `<image file>.sha256`, in `sha256sum` format.
    pub checksum: PathBuf,
    /// `<node>.bmap` of the raw image.
    pub bmap: PathBuf,
    /// `<node>.build.json`.
    pub build_json: PathBuf,
}

/// Publishes the outputs of one build, all or nothing (see the module docs). The image is
/// only read: a raw output is a (sparse or reflinked) copy of it.
pub fn publish(req: &PublishRequest<'_>) -> Result<Published, OutputError> {
    publish_reusing(req, None)
}

/// [`publish_reusing`] for an image the caller gives up: a raw output *is* the image, renamed
/// into place, so publishing costs no second copy of a multi-GB file. `piimg build` calls it
/// with its work image, which it made in a work folder inside the out folder for that
/// reason. The image must not be used afterwards: on success it is the output, on failure it
/// is removed with the other temporaries (all or nothing still holds). On another filesystem
/// than the out folder it is copied as [`publish`] would. Compressed outputs only read it.
pub fn publish_moving(
    req: &PublishRequest<'_>,
    base: Option<&ReuseBase>,
) -> Result<Published, OutputError> {
    publish_with(req, From::File(base), true)
}

/// Publishes the node image `overlay` holds (`req.image` only names it): compressed, only its
/// written chunks are read and compressed and the base's cached frames make up the rest; raw,
/// it is materialized (sparse copy of the base plus the written blocks) into the output.
pub fn publish_overlay(
    req: &PublishRequest<'_>,
    overlay: &Overlay,
    base: &ReuseBase,
) -> Result<Published, OutputError> {
    publish_with(req, From::Overlay(overlay, base), false)
}

/// Where the image to publish comes from.
#[derive(Clone, Copy)]
enum From<'a> {
    /// `req.image`, with the base whose frames it may reuse.
    File(Option<&'a ReuseBase>),
    /// An overlay over the base.
    Overlay(&'a Overlay, &'a ReuseBase),
}

/// [`publish`], where a compressed image reuses the cached frames of the base the image was
/// started from (see [`super::compress_image_reusing`]): the same bytes, only the changed
/// chunks compressed.
pub fn publish_reusing(
    req: &PublishRequest<'_>,
    base: Option<&ReuseBase>,
) -> Result<Published, OutputError> {
    publish_with(req, From::File(base), false)
}

fn publish_with(
    req: &PublishRequest<'_>,
    from: From<'_>,
    may_move: bool,
) -> Result<Published, OutputError> {
    check_name(req.node)?;
    let dir = req.out_dir;
    let image_name = format!("{}.{}", req.node, req.format.extension());
    let finals = Published {
        image: dir.join(&image_name),
        image_sha256: String::new(),
        checksum: dir.join(format!("{image_name}.sha256")),
        bmap: dir.join(format!("{}.bmap", req.node)),
        build_json: dir.join(format!("{}.build.json", req.node)),
    };

    let mut locks = Vec::new();
    let movable = may_move
        && matches!(from, From::File(_))
        && req.format == Format::Raw
        && same_filesystem(req.image, dir);
    let (image_tmp, image_sha256, bmap) = if movable {
        let (sha256, bmap) = adopt_image(req.image, &finals.image)?;
        // From here on the caller's image is ours: dropped (removed) on any failure below.
        let path = TempPath::try_from_path(req.image).map_err(|e| read_error(req.image, e))?;
        (path, sha256, bmap)
    } else {
        let temp = temp_for(&finals.image, &mut locks)?;
        let (sha256, bmap) = match from {
            From::File(base) => write_image(req, base, temp.as_file(), &finals.image)?,
            From::Overlay(overlay, base) => {
                write_overlay(req, overlay, base, &temp, &finals.image)?
            }
        };
        (temp.into_temp_path(), sha256, bmap)
    };

    let checksum_tmp = temp_for(&finals.checksum, &mut locks)?;
    write_bytes(
        &checksum_tmp,
        format!("{image_sha256}  {image_name}\n").as_bytes(),
        &finals.checksum,
    )?;

    let bmap_tmp = temp_for(&finals.bmap, &mut locks)?;
    write_bytes(&bmap_tmp, bmap.to_xml().as_bytes(), &finals.bmap)?;

    let json_tmp = temp_for(&finals.build_json, &mut locks)?;
    let mut json = serde_json::to_vec_pretty(req.build_json)
        .map_err(|e| write_error(&finals.build_json, io::Error::other(e)))?;
    json.push(b'\n');
    write_bytes(&json_tmp, &json, &finals.build_json)?;

    rename_all(vec![
        (image_tmp, finals.image.clone()),
        (checksum_tmp.into_temp_path(), finals.checksum.clone()),
        (bmap_tmp.into_temp_path(), finals.bmap.clone()),
        (json_tmp.into_temp_path(), finals.build_json.clone()),
    ])?;
    sync_dir(dir);
    tracing::info!(image = %finals.image.display(), sha256 = %image_sha256, "published");
    Ok(Published {
        image_sha256,
        ..finals
    })
}

/// A node name must make plain file names in the out folder.
fn check_name(node: &str) -> Result<(), OutputError> {
    let ok = !node.is_empty()
        && !node.starts_with('.')
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(OutputError::BadName {
            name: node.to_string(),
        })
    }
}

/// A temporary file beside `final_path`, mode 0600 from creation (tempfile's default),
/// removed when dropped unless renamed.
/// Locked (see [`crate::leftovers`]) while the lock pushed onto `locks` lives, so the next
/// run removes it if this one is killed.
fn temp_for(
    final_path: &Path,
    locks: &mut Vec<crate::leftovers::EntryLock>,
) -> Result<NamedTempFile, OutputError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.");
    builder.prefix(&prefix).suffix(".tmp");
    let (temp, lock) =
        crate::leftovers::temp_file(&builder, dir).map_err(|e| write_error(final_path, e))?;
    locks.push(lock);
    Ok(temp)
}

/// Whether `image` can be renamed into `dir` (same device), so moving it costs nothing.
fn same_filesystem(image: &Path, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(image), std::fs::metadata(dir)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Prepares the caller's raw image to become the output as it is: mode 0600 (it holds the
/// join token), read once for its SHA-256 and block map, and synced. The sync (disk-bound:
/// a fresh copy of the base is gigabytes of dirty pages) runs beside the hashing (CPU-bound)
/// instead of before it.
fn adopt_image(image: &Path, final_path: &Path) -> Result<(String, Bmap), OutputError> {
    let file = File::open(image).map_err(|e| read_error(image, e))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| write_error(final_path, e))?;
    let (hashed, synced) = std::thread::scope(|s| {
        let syncing = s.spawn(|| file.sync_all());
        let hashed = Bmap::of_image_with_sha256(image);
        let synced = syncing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sync thread panicked")));
        (hashed, synced)
    });
    synced.map_err(|e| write_error(final_path, e))?;
    let (bmap, sha256) = hashed?;
    Ok((sha256, bmap))
}

/// Writes the image in its format into `out` and syncs it; returns the SHA-256 of the bytes
/// written and the block map of the raw image.
fn write_image(
    req: &PublishRequest<'_>,
    base: Option<&ReuseBase>,
    out: &File,
    final_path: &Path,
) -> Result<(String, Bmap), OutputError> {
    if req.format == Format::Raw {
        let src = File::open(req.image).map_err(|e| read_error(req.image, e))?;
        clone_into(&src, out).map_err(|e| match e {
            Side::Read(e) => read_error(req.image, e),
            Side::Write(e) => write_error(final_path, e),
        })?;
        out.sync_all().map_err(|e| write_error(final_path, e))?;
        let (bmap, sha256) = Bmap::of_image_with_sha256(req.image)?;
        return Ok((sha256, bmap));
    }
    // The block map comes out of the compression pass: no second read of the image.
    write_compressed(out, final_path, |writer| match base {
        Some(base) => {
            compress_reusing_to(req.image, base, req.format, writer, final_path).map(|s| s.bmap)
        }
        None => compress_image_to(req.image, req.format, writer, final_path).map(|(_, b)| b),
    })
}

/// Runs `compress` into `out` through a hashing buffer and syncs it; returns the SHA-256 of
/// the bytes written and the block map `compress` made.
fn write_compressed(
    out: &File,
    final_path: &Path,
    compress: impl FnOnce(&mut dyn Write) -> Result<Bmap, OutputError>,
) -> Result<(String, Bmap), OutputError> {
    let mut writer = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, out),
        hasher: Sha256::new(),
    };
    let bmap = compress(&mut writer)?;
    let HashingWriter { inner, hasher } = writer;
    inner
        .into_inner()
        .map_err(|e| write_error(final_path, e.into_error()))?
        .sync_all()
        .map_err(|e| write_error(final_path, e))?;
    Ok((hex::encode(hasher.finalize()), bmap))
}

/// [`write_image`] for an overlay.
fn write_overlay(
    req: &PublishRequest<'_>,
    overlay: &Overlay,
    base: &ReuseBase,
    temp: &NamedTempFile,
    final_path: &Path,
) -> Result<(String, Bmap), OutputError> {
    if req.format == Format::Raw {
        overlay.materialize(temp.path())?;
        return adopt_image(temp.path(), final_path);
    }
    write_compressed(temp.as_file(), final_path, |writer| {
        compress_overlay_to(overlay, &base.frames, req.format, writer, final_path).map(|s| s.bmap)
    })
}

fn write_bytes(temp: &NamedTempFile, bytes: &[u8], final_path: &Path) -> Result<(), OutputError> {
    let mut file = temp.as_file();
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| write_error(final_path, e))
}

/// Renames each temporary into place; if one fails, removes the ones already renamed so no
/// output path is left holding a file of this half-published build.
fn rename_all(pairs: Vec<(TempPath, PathBuf)>) -> Result<(), OutputError> {
    let mut done: Vec<PathBuf> = Vec::new();
    for (temp, path) in pairs {
        if let Err(e) = temp.persist(&path) {
            for p in &done {
                let _ = std::fs::remove_file(p);
            }
            return Err(write_error(&path, e.error));
        }
        done.push(path);
    }
    Ok(())
}

/// Makes the renames durable; best effort, since not every filesystem syncs folders.
fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "folder sync failed");
    }
}

/// Passes bytes through while hashing them, so the checksum costs no second read.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
