//! Reused frames: a node compressed with the base's cached frames is byte for byte the
//! from-scratch compression, in every format, decodes with the standard tool to the raw node
//! image, and the second node of a base compresses only its changed chunks.

mod io_support;
use io_support as common;

use common::{noise, sh, standard_image};
use piimg::bmap::Bmap;
use piimg::image::{clone_sparse, CHUNK_SIZE};
use piimg::output::{compress_image, compress_image_reusing, frames_dir, Format, ReuseBase};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A node made from the base: a copy with one chunk's worth of bytes changed in two places.
fn node_from(base: &Path, node: &Path, seed: u64) {
    clone_sparse(base, node).expect("clone");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(node)
        .expect("open node");
    file.write_all_at(&noise(5000, seed), 100).expect("edit");
    file.write_all_at(&noise(70_000, seed + 1), (20 << 20) + 4096)
        .expect("edit");
}

/// A base image and a node made from it, in `d`; the node has been compressed once, which
/// fills the base's frame cache under `key`.
fn cached_base_and_node(d: &Path, key: &str, seed: u64) -> (ReuseBase, std::path::PathBuf) {
    let base = d.join("base.img");
    standard_image(&base);
    let reuse = ReuseBase {
        image: base.clone(),
        frames: frames_dir(&d.join("cache"), key, Format::Zstd),
    };
    let node = d.join("node.img");
    node_from(&base, &node, seed);
    compress_image_reusing(&node, &reuse, Format::Zstd, &mut Vec::new()).expect("first");
    (reuse, node)
}

fn compressed(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

#[test]
fn reused_frames_give_the_from_scratch_bytes_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let base = d.join("base.img");
    standard_image(&base);
    let chunk_count = std::fs::metadata(&base)
        .expect("stat")
        .len()
        .div_ceil(CHUNK_SIZE);
    for (format, tool) in [
        (Format::Zstd, "zstd -q -d -c"),
        (Format::Xz, "xz -d -c"),
        (Format::Gzip, "gzip -d -c"),
    ] {
        let reuse = ReuseBase {
            image: base.clone(),
            frames: frames_dir(&d.join("cache"), "0123abcd", format),
        };
        for (i, node_name) in ["node-1.img", "node-2.img"].iter().enumerate() {
            let node = d.join(node_name);
            node_from(&base, &node, 40 + i as u64);
            let scratch = compressed(|out| {
                compress_image(&node, format, out).expect("compress");
            });
            let mut stats = None;
            let reused = compressed(|out| {
                stats = Some(compress_image_reusing(&node, &reuse, format, out).expect("reuse"));
            });
            let stats = stats.expect("stats");
            assert!(
                reused == scratch,
                "{format:?} {node_name}: reused frames differ from a from-scratch compression"
            );
            assert_eq!(stats.written, reused.len() as u64);
            // The block map made in the compression pass is the one a fresh read gives.
            assert_eq!(
                stats.bmap,
                Bmap::of_image(&node).expect("bmap"),
                "{format:?} {node_name}"
            );
            if i == 0 {
                assert_eq!(stats.reused, 0, "{format:?}: nothing cached yet");
                assert_eq!(stats.hashes_reused, 0, "{format:?}: nothing cached yet");
            } else {
                // Unchanged chunks take their range hashes from the base's cache.
                assert_eq!(
                    stats.hashes_reused,
                    chunk_count - 2,
                    "{format:?}: {stats:?}"
                );
                // The second node compresses only the two chunks it changed.
                assert_eq!(stats.compressed, 2, "{format:?}: {stats:?}");
                assert_eq!(stats.reused, chunk_count - 2, "{format:?}: {stats:?}");
            }
            let file = d.join(format!("{node_name}.{}", format.extension()));
            std::fs::write(&file, &reused).expect("write");
            let decoded = d.join("decoded.img");
            sh(&format!(
                "{tool} '{}' > '{}'",
                file.display(),
                decoded.display()
            ));
            assert!(
                std::fs::read(&decoded).expect("read") == std::fs::read(&node).expect("read"),
                "{tool} does not give the raw node image"
            );
        }
    }
}

#[test]
fn a_damaged_frame_cache_is_rebuilt_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (reuse, node) = cached_base_and_node(d, "feed", 7);
    // Truncate the cached frames: the index no longer matches, so the cache is not used.
    let frames = reuse.frames.join("frames");
    let len = std::fs::metadata(&frames).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&frames)
        .and_then(|f| f.set_len(len - 10))
        .expect("truncate");
    let mut out = Vec::new();
    let stats = compress_image_reusing(&node, &reuse, Format::Zstd, &mut out).expect("second");
    assert_eq!(stats.reused, 0);
    let mut scratch = Vec::new();
    compress_image(&node, Format::Zstd, &mut scratch).expect("scratch");
    assert!(out == scratch);
}

/// A damaged or missing range-hash cache is not trusted: the hashes are computed and the
/// block map is still the one a fresh read gives; frames are still reused.
#[test]
fn a_damaged_hash_cache_is_recomputed_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (reuse, node) = cached_base_and_node(d, "beef", 9);
    let ranges = reuse.frames.join("ranges");
    let text = std::fs::read_to_string(&ranges).expect("ranges cache");
    let expected = Bmap::of_image(&node).expect("bmap");
    for damaged in [
        // A wrong hash is not detectable by shape; a cut-short file, bad hex and a missing
        // file are.
        text.lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        text.replacen(
            |c: char| c.is_ascii_hexdigit() && c.is_ascii_alphabetic(),
            "Z",
            1,
        ),
        String::new(),
    ] {
        if damaged.is_empty() {
            std::fs::remove_file(&ranges).expect("remove");
        } else {
            std::fs::write(&ranges, &damaged).expect("damage");
        }
        let stats =
            compress_image_reusing(&node, &reuse, Format::Zstd, &mut Vec::new()).expect("again");
        assert!(stats.reused > 0, "frames still reused: {stats:?}");
        assert_eq!(stats.hashes_reused, 0);
        assert_eq!(stats.bmap, expected);
    }
}

/// A compressed build edits a copy-on-write overlay instead of a copy of the base: its output
/// must be the bytes (and block map) the same edits made in a copy give, in every format,
/// whether the base's frame cache is being built (first node) or used (second node), and the
/// second node compresses only the chunks the overlay says it wrote.
#[test]
fn an_overlay_compresses_to_the_bytes_of_the_same_edits_in_a_copy() {
    use piimg::image::{Device, Overlay};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let base = d.join("base.img");
    standard_image(&base);
    let base_bytes = std::fs::read(&base).expect("read base");
    let chunk_count = (base_bytes.len() as u64).div_ceil(CHUNK_SIZE);
    for format in [Format::Zstd, Format::Xz, Format::Gzip] {
        let reuse = ReuseBase {
            image: base.clone(),
            frames: frames_dir(&d.join("cache"), "overlay", format),
        };
        for seed in [7u64, 8] {
            let copy = d.join("copy.img");
            node_from(&base, &copy, seed);
            let delta = d.join(format!("delta-{seed}-{format:?}"));
            let overlay = Overlay::create(&base, &delta, &d.join("node.img")).expect("overlay");
            overlay.write_at(&noise(5000, seed), 100).expect("edit");
            overlay
                .write_at(&noise(70_000, seed + 1), (20 << 20) + 4096)
                .expect("edit");
            let scratch = compressed(|out| {
                compress_image(&copy, format, out).expect("compress");
            });
            let mut stats = None;
            let from_overlay = compressed(|out| {
                stats = Some(
                    piimg::output::compress_overlay_to(
                        &overlay,
                        &reuse.frames,
                        format,
                        out,
                        Path::new("out"),
                    )
                    .expect("overlay compress"),
                );
            });
            let stats = stats.expect("stats");
            assert!(
                from_overlay == scratch,
                "{format:?} seed {seed}: the overlay's output differs from the copy's"
            );
            assert_eq!(
                stats.bmap,
                Bmap::of_image(&copy).expect("bmap"),
                "{format:?}"
            );
            if seed == 8 {
                assert_eq!(stats.compressed, 2, "{format:?}: {stats:?}");
                assert_eq!(stats.reused, chunk_count - 2, "{format:?}: {stats:?}");
                assert_eq!(
                    stats.hashes_reused,
                    chunk_count - 2,
                    "{format:?}: {stats:?}"
                );
            }
            let materialized = d.join("materialized.img");
            overlay.materialize(&materialized).expect("materialize");
            assert!(
                std::fs::read(&materialized).expect("read") == std::fs::read(&copy).expect("read")
            );
            assert!(
                std::fs::read(&base).expect("read") == base_bytes,
                "the base was written"
            );
            std::fs::remove_file(&materialized).expect("rm");
        }
    }
}
