//! Decompression of base images: every format decodes to the exact raw bytes, sparse, and a
//! broken input never leaves a file behind.

mod io_support;
use io_support as common;

use common::{allocated, names, sh, standard_image};
use piimg::source::{decompress_to, open_image, Compression, SourceError};
use std::path::Path;

fn roundtrip(dir: &Path, compressed: &Path, expected: &[u8]) {
    let out = dir.join("out.img");
    let size = decompress_to(compressed, &out).expect("decompress");
    assert_eq!(size, expected.len() as u64);
    let got = std::fs::read(&out).expect("read output");
    assert!(
        got == expected,
        "{} decoded to different bytes",
        compressed.display()
    );
    // ~3 MiB of data in a 24 MiB image: holes must stay holes.
    assert!(
        allocated(&out) < 6 << 20,
        "output not sparse: {} bytes allocated",
        allocated(&out)
    );
    std::fs::remove_file(&out).expect("remove output");
}

#[test]
fn every_format_decodes_to_the_raw_image_sparse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let raw = d.join("base.img");
    let bytes = standard_image(&raw);
    let r = raw.display();
    let p = d.display();
    sh(&format!("xz -1 -T1 -c {r} > {p}/single.xz"));
    sh(&format!(
        "xz -1 -T2 --block-size=1MiB -c {r} > {p}/blocks.xz"
    ));
    sh(&format!(
        "head -c 5000000 {r} | xz -1 -c > {p}/multi.xz && tail -c +5000001 {r} | xz -1 -c >> {p}/multi.xz"
    ));
    sh(&format!(
        "head -c 5000000 {r} | gzip -n -c > {p}/multi.gz && tail -c +5000001 {r} | gzip -n -c >> {p}/multi.gz"
    ));
    sh(&format!(
        "head -c 5000000 {r} | zstd -q -c > {p}/multi.zst && tail -c +5000001 {r} | zstd -q -c >> {p}/multi.zst"
    ));
    for (name, format) in [
        ("single.xz", Compression::Xz),
        ("blocks.xz", Compression::Xz),
        ("multi.xz", Compression::Xz),
        ("multi.gz", Compression::Gzip),
        ("multi.zst", Compression::Zstd),
        ("base.img", Compression::None),
    ] {
        let path = d.join(name);
        assert_eq!(
            Compression::detect(&path).expect("detect"),
            format,
            "{name}"
        );
        roundtrip(d, &path, &bytes);
    }
}

#[test]
fn format_is_told_by_magic_not_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let raw = d.join("base.img");
    let bytes = standard_image(&raw);
    sh(&format!(
        "zstd -q -c {} > {}/looks-raw.img",
        raw.display(),
        d.display()
    ));
    roundtrip(d, &d.join("looks-raw.img"), &bytes);
}

#[test]
fn truncated_or_corrupt_input_is_an_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let raw = d.join("base.img");
    standard_image(&raw);
    let r = raw.display();
    let p = d.display();
    sh(&format!(
        "xz -1 -c {r} > {p}/a.xz && gzip -n -c {r} > {p}/a.gz && zstd -q -c {r} > {p}/a.zst"
    ));
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    for (name, label) in [("a.xz", ".xz"), ("a.gz", ".gz"), ("a.zst", ".zst")] {
        let full = std::fs::read(d.join(name)).expect("read");
        // Cut in the middle.
        let cut = d.join(format!("cut-{name}"));
        common::write(&cut, &full[..full.len() / 2]);
        let err = decompress_to(&cut, &out_dir.join("x.img")).expect_err("truncated must fail");
        let msg = err.to_string();
        assert!(
            matches!(err, SourceError::Truncated { .. }),
            "{name}: want Truncated, got {msg}"
        );
        assert!(msg.contains(&format!("truncated {label} stream")), "{msg}");
        assert!(msg.contains(&cut.display().to_string()), "{msg}");
        // Damage bytes in the middle.
        let mut bad = full.clone();
        let mid = bad.len() / 2;
        for b in &mut bad[mid..mid + 64] {
            *b ^= 0x5A;
        }
        let corrupt = d.join(format!("bad-{name}"));
        common::write(&corrupt, &bad);
        let err = decompress_to(&corrupt, &out_dir.join("x.img")).expect_err("corrupt must fail");
        assert!(
            matches!(
                err,
                SourceError::Corrupt { .. } | SourceError::Truncated { .. }
            ),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(&corrupt.display().to_string()));
        assert!(
            names(&out_dir).is_empty(),
            "left behind: {:?}",
            names(&out_dir)
        );
    }
}

#[test]
fn open_image_uses_raw_as_is_and_decompresses_to_a_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let raw = d.join("base.img");
    let bytes = common::standard_disk_image(&raw);
    let image = open_image(&raw).expect("open raw");
    assert_eq!(image.path(), raw);
    assert_eq!(image.compression(), Compression::None);

    sh(&format!(
        "xz -1 -c {} > {}/base.img.xz",
        raw.display(),
        d.display()
    ));
    let image = open_image(&d.join("base.img.xz")).expect("open xz");
    assert_eq!(image.compression(), Compression::Xz);
    let temp = image.path().to_path_buf();
    assert!(std::fs::read(&temp).expect("read temp") == bytes);
    drop(image);
    assert!(!temp.exists(), "temp image not removed on drop");
}

/// A sector-multiple image (QCOW2 sizes are whole sectors) and its QCOW2 conversion.
fn qcow2_pair(d: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let raw = d.join("base.img");
    let mut bytes = common::sparse_image(
        &raw,
        24 << 20,
        &[(0, 1 << 20), (9 << 20, 1_500_000), (20 << 20, 600_000)],
    );
    common::add_mbr(&raw, &mut bytes);
    // Named `.img` like Ubuntu's cloud image: the magic decides, not the name.
    let qcow = d.join("noble-server-cloudimg-amd64.img");
    sh(&format!(
        "qemu-img convert -q -f raw -O qcow2 {} {}",
        raw.display(),
        qcow.display()
    ));
    (bytes, qcow)
}

#[test]
fn qcow2_converts_to_the_raw_image_sparse_and_into_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (bytes, qcow) = qcow2_pair(d);
    assert_eq!(
        Compression::detect(&qcow).expect("detect"),
        Compression::Qcow2
    );
    roundtrip(d, &qcow, &bytes);

    let cache = piimg::source::Cache::new(d.join("cache"));
    let digest = piimg::source::sha256_file(&qcow).expect("digest");
    let base = cache.base_image(&qcow, &digest).expect("cache base");
    assert!(
        base.starts_with(d.join("cache").join("bases")),
        "{}",
        base.display()
    );
    assert!(std::fs::read(&base).expect("read base") == bytes);
    assert!(allocated(&base) < 6 << 20, "cached base not sparse");

    let image = open_image(&qcow).expect("open qcow2");
    assert_eq!(image.compression(), Compression::Qcow2);
    assert!(std::fs::read(image.path()).expect("read temp") == bytes);
}

#[test]
fn qcow2_with_a_backing_file_or_bad_data_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (_, qcow) = qcow2_pair(d);
    let out_dir = d.join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    // An overlay reading its data from another file (which could be any file of the machine).
    let overlay = d.join("overlay.qcow2");
    sh(&format!(
        "qemu-img create -q -f qcow2 -F qcow2 -b {} {}",
        qcow.display(),
        overlay.display()
    ));
    let err = decompress_to(&overlay, &out_dir.join("x.img")).expect_err("backing file");
    assert!(
        matches!(err, SourceError::Qcow2NotSelfContained { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&overlay.display().to_string()),
        "{err}"
    );
    // The magic, then garbage: qemu-img's refusal, with the file named.
    let junk = d.join("junk.img");
    let mut bad = b"QFI\xfb".to_vec();
    bad.extend(std::iter::repeat_n(0x5Au8, 4096));
    bad[8..16].fill(0);
    common::write(&junk, &bad);
    let err = decompress_to(&junk, &out_dir.join("x.img")).expect_err("junk");
    assert!(matches!(err, SourceError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&junk.display().to_string()),
        "{err}"
    );
    assert!(
        names(&out_dir).is_empty(),
        "left behind: {:?}",
        names(&out_dir)
    );
}

/// `tool -1` of the file at `path`, in memory.
fn compress(tool: &str, path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{tool} -1 -c < '{}'", path.display()))
        .output()
        .expect("run the compressor");
    assert!(out.status.success(), "{tool}");
    out.stdout
}

/// Issue 15.10: a compressed disk image that decodes far past what its own partition table
/// accounts for (a decompression bomb: the image, then GiBs of zeros in more streams, which
/// all three formats concatenate) stops once the output passes the table's end plus the
/// margin; a stream whose first sector holds no table stops at once. No file is left.
#[test]
fn a_decompression_bomb_stops_at_its_partition_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let raw = d.join("base.img");
    common::standard_disk_image(&raw);
    let zeros = d.join("zeros");
    std::fs::File::create(&zeros)
        .expect("create")
        .set_len(256 << 20)
        .expect("size");
    for (tool, ext) in [("xz", "xz"), ("gzip", "gz"), ("zstd", "zst")] {
        let mut bomb = compress(tool, &raw);
        let chunk = compress(tool, &zeros);
        for _ in 0..8 {
            bomb.extend_from_slice(&chunk);
        }
        let path = d.join(format!("bomb.img.{ext}"));
        common::write(&path, &bomb);
        let start = std::time::Instant::now();
        let err = open_image(&path).expect_err("the bomb was decoded");
        let msg = err.to_string();
        assert!(
            matches!(err, SourceError::BeyondTable { .. }),
            "{ext}: {msg}"
        );
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("the MBR partition table ends at byte 25166336"),
            "{ext}: {msg}"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{ext}: took {:?}",
            start.elapsed()
        );

        let path = d.join(format!("zeros.img.{ext}"));
        common::write(&path, &chunk);
        let err = open_image(&path).expect_err("zeros are no disk image");
        assert!(
            matches!(err, SourceError::NotADiskImage { .. }),
            "{ext}: {err}"
        );
        assert!(
            err.to_string().contains("no partition table"),
            "{ext}: {err}"
        );
    }
    let cache = piimg::source::Cache::new(d.join("cache"));
    let bomb = d.join("bomb.img.zst");
    let digest = piimg::source::sha256_file(&bomb).expect("digest");
    cache
        .base_image(&bomb, &digest)
        .expect_err("the bomb was cached");
    assert!(
        names(&d.join("cache").join("bases")).is_empty(),
        "{:?}",
        names(&d.join("cache").join("bases"))
    );
}
