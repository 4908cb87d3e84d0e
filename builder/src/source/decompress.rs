//! Turns a base image as downloaded (`.img`, `.img.xz`, `.img.gz`, `.img.zst`, QCOW2) into a raw,
//! sparse image file. The format is told by magic bytes, never by the name, because downloads are
//! cached under their digest and lose their names.

use super::bounded::{BoundError, TableBounded};
use super::compression::Compression;
use super::error::{read_error, write_error};
use super::sparse_write::{copy_sparse, CopyError};
use super::SourceError;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Input buffer for decoders: big enough that syscalls do not dominate.
const READ_BUFFER: usize = 1 << 20;
/// Memory the multi-threaded xz decoder may use before it drops to fewer threads; keeps a
/// build's peak RSS bounded whatever the image size.
const XZ_MEMLIMIT_THREADING: u64 = 192 << 20;

/// Decompresses `input` (any [`Compression`], raw is copied) into a sparse file at `output`
/// and returns its size in bytes. Streams with bounded memory; multi-block xz decodes on
/// several threads. Writes a temporary file beside `output` and renames it only when the
/// whole stream decoded, so a failure never leaves a file (partial or not) at `output`.
pub fn decompress_to(input: &Path, output: &Path) -> Result<u64, SourceError> {
    decompress_to_locked(input, output, None).map(|(size, _lock)| size)
}

/// Says that what is decompressed is a disk image, and how to name it. Then a compressed
/// stream is bounded by its own partition table (see `bounded`): one whose first sector
/// holds none stops at once, one that decodes far past the disk its table describes stops
/// there; and the output's table is read ([`crate::disk::Layout::read`]) before the output
/// reaches its name, so a base that would be refused never lands in the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DiskImage<'a> {
    /// The input as the user named it (a path or URL), for errors: the input itself may be
    /// piimg's cached download.
    pub shown: &'a Path,
}

/// [`decompress_to`], returning also the lock on the file now at `output` (see
/// [`crate::leftovers`]): for an `output` that is itself a temporary file of this run. With
/// `disk`, the output is checked as a disk image (see [`DiskImage`]).
pub(crate) fn decompress_to_locked(
    input: &Path,
    output: &Path,
    disk: Option<DiskImage<'_>>,
) -> Result<(u64, crate::leftovers::EntryLock), SourceError> {
    let format = Compression::detect(input)?;
    if format == Compression::Qcow2 {
        return convert_qcow2(input, output, disk);
    }
    let named = disk.map_or(input, |d| d.shown);
    let file =
        crate::input_file::open_regular(input).map_err(|source| read_error(input, source))?;
    let reader = BufReader::with_capacity(READ_BUFFER, file);
    let decoder = decoder_for(format, reader).map_err(|e| decode_error(named, format, e))?;
    let mut decoder: Box<dyn Read + Send> = match (disk, format) {
        (Some(_), Compression::Xz | Compression::Gzip | Compression::Zstd) => {
            Box::new(TableBounded::new(decoder))
        }
        _ => decoder,
    };

    let dir = parent_dir(output);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".piimg-decompress-");
    let (temp, _lock) =
        crate::leftovers::temp_file(&builder, dir).map_err(|source| write_error(output, source))?;
    let size = copy_sparse(&mut decoder, temp.as_file()).map_err(|e| match e {
        CopyError::Read(err) => read_failure(named, format, err),
        CopyError::Write(err) => write_error(output, err),
    })?;
    temp.as_file()
        .sync_all()
        .map_err(|source| write_error(output, source))?;
    if let Some(disk) = disk {
        check_table(temp.path(), disk)?;
    }
    temp.persist(output)
        .map_err(|e| write_error(output, e.error))?;
    tracing::debug!(input = %input.display(), output = %output.display(), %format, size, "decompressed");
    Ok((size, _lock))
}

/// [`decompress_to`] for QCOW2: `qemu-img` writes a temporary file beside `output`, renamed
/// into place only when the conversion succeeded.
fn convert_qcow2(
    input: &Path,
    output: &Path,
    disk: Option<DiskImage<'_>>,
) -> Result<(u64, crate::leftovers::EntryLock), SourceError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".piimg-decompress-");
    let (temp, _lock) = crate::leftovers::temp_file(&builder, parent_dir(output))
        .map_err(|source| write_error(output, source))?;
    let temp = temp.into_temp_path();
    super::qcow2::convert(input, &temp)?;
    let file = File::open(&temp).map_err(|source| write_error(output, source))?;
    file.sync_all()
        .map_err(|source| write_error(output, source))?;
    let size = file
        .metadata()
        .map_err(|source| write_error(output, source))?
        .len();
    if let Some(disk) = disk {
        check_table(&temp, disk)?;
    }
    temp.persist(output)
        .map_err(|e| write_error(output, e.error))?;
    tracing::debug!(input = %input.display(), output = %output.display(), size, "converted QCOW2");
    Ok((size, _lock))
}

/// Reads the partition table of a decoded image before it gets its name; errors name the
/// image as the user gave it, not the temporary file.
fn check_table(decoded: &Path, disk: DiskImage<'_>) -> Result<(), SourceError> {
    crate::disk::Layout::read(decoded)
        .map(|_| ())
        .map_err(|e| SourceError::BaseTable(Box::new(e.shown_as(&[decoded], disk.shown))))
}

/// Why reading the decoded stream failed: the partition-table bound, or the decoder.
fn read_failure(named: &Path, format: Compression, err: io::Error) -> SourceError {
    match BoundError::of(&err) {
        Some(BoundError::NoTable(detail)) => SourceError::NotADiskImage {
            path: named.to_path_buf(),
            format,
            detail: detail.to_string(),
        },
        Some(&BoundError::Beyond {
            kind,
            table_end,
            limit,
        }) => SourceError::BeyondTable {
            path: named.to_path_buf(),
            format,
            table: kind,
            table_end,
            limit,
        },
        None => decode_error(named, format, err),
    }
}

/// The folder a file lives in, `.` for a bare name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A reader of decompressed bytes for `format` (also used by `piimg flash`, which streams a
/// compressed image without unpacking it to disk).
pub(crate) fn decoder_for(
    format: Compression,
    reader: BufReader<File>,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match format {
        Compression::None => Box::new(reader),
        Compression::Xz => Box::new(XzStreams::new(reader)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::Qcow2 => {
            return Err(io::Error::other(
                "QCOW2 is converted by qemu-img, not streamed",
            ))
        }
    })
}

/// Decodes every concatenated `.xz` stream, each with liblzma's multi-threaded decoder (which
/// splits a multi-block stream across threads). liblzma's threaded decoder cannot be told to
/// continue past the end of a stream, so this starts a new decoder at each stream boundary and
/// skips the zero padding the format allows between streams.
struct XzStreams<R: BufRead> {
    /// The decoder of the current stream; `None` between streams.
    current: Option<liblzma::bufread::XzDecoder<R>>,
    /// The input while no stream is open.
    idle: Option<R>,
}

impl<R: BufRead> XzStreams<R> {
    fn new(reader: R) -> Self {
        XzStreams {
            current: None,
            idle: Some(reader),
        }
    }

    /// Opens the next stream, or returns `false` at the clean end of the input.
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(mut reader) = self.idle.take() else {
            return Ok(false);
        };
        // Stream padding: zero bytes (the format requires a multiple of four).
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            if zeros == 0 {
                break;
            }
            reader.consume(zeros);
        }
        if !reader
            .fill_buf()?
            .starts_with(&super::compression::XZ_MAGIC[..1])
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data after the last xz stream is not an xz stream",
            ));
        }
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads())
            .memlimit_threading(XZ_MEMLIMIT_THREADING)
            .memlimit_stop(u64::MAX)
            .decoder()
            .map_err(io::Error::other)?;
        self.current = Some(liblzma::bufread::XzDecoder::new_stream(reader, stream));
        Ok(true)
    }
}

impl<R: BufRead> Read for XzStreams<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(decoder) = self.current.as_mut() {
                let n = decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // End of this stream: hand the input back and look for another.
                if let Some(decoder) = self.current.take() {
                    self.idle = Some(decoder.into_inner());
                }
            }
            if !self.open_next()? {
                return Ok(0);
            }
        }
    }
}

/// Threads for decoders and encoders: every core the process may use.
pub(crate) fn threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

fn decode_error(path: &Path, format: Compression, err: io::Error) -> SourceError {
    let detail = err.to_string();
    let truncated = err.kind() == io::ErrorKind::UnexpectedEof
        || detail.contains("incomplete")
        || detail.contains("premature")
        || detail.contains("truncated");
    let path = path.to_path_buf();
    if truncated {
        SourceError::Truncated {
            path,
            format,
            detail,
        }
    } else {
        SourceError::Corrupt {
            path,
            format,
            detail,
        }
    }
}
