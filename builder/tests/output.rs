//! Outputs: sparse copies keep holes, every compressed format decodes with the standard tool
//! to the raw image, `bmaptool copy` accepts our `.bmap`, and publishing is all or nothing.

mod io_support;
use io_support as common;

use common::{allocated, names, sh, standard_image};
use piimg::bmap::Bmap;
use piimg::image::{clone_sparse, data_extents};
use piimg::output::{compress_image, publish, publish_moving, Format, PublishRequest};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn extents_are_the_written_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("a.img");
    standard_image(&img);
    let extents = data_extents(&img).expect("extents");
    let starts: Vec<u64> = extents.iter().map(|e| e.offset).collect();
    assert_eq!(starts, vec![0, 9 << 20, 20 << 20]);
    let mapped: u64 = extents.iter().map(|e| e.len).sum();
    assert!(mapped < 4 << 20, "mapped {mapped}");
}

#[test]
fn clone_sparse_copies_bytes_and_keeps_holes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("base.img");
    let bytes = standard_image(&src);
    let dst = dir.path().join("node.img");
    let method = clone_sparse(&src, &dst).expect("clone");
    assert!(
        std::fs::read(&dst).expect("read") == bytes,
        "copy differs ({method:?})"
    );
    assert_eq!(
        data_extents(&dst).expect("extents"),
        data_extents(&src).expect("extents")
    );
    assert!(allocated(&dst) <= allocated(&src) + (64 << 10));
    let mode = std::fs::metadata(&dst).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn every_format_decodes_with_the_standard_tool_and_is_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = d.join("node.img");
    standard_image(&img);
    for (format, tool) in [
        (Format::Zstd, "zstd -q -d -c"),
        (Format::Xz, "xz -d -c"),
        (Format::Gzip, "gzip -d -c"),
    ] {
        let out = d.join(format!("node.{}", format.extension()));
        let mut file = std::fs::File::create(&out).expect("create");
        let size = compress_image(&img, format, &mut file).expect("compress");
        assert_eq!(size, std::fs::metadata(&out).expect("stat").len());
        sh(&format!(
            "{tool} {} | cmp - {}",
            out.display(),
            img.display()
        ));
        let again = d.join("again");
        let mut file = std::fs::File::create(&again).expect("create");
        compress_image(&img, format, &mut file).expect("compress again");
        assert!(
            std::fs::read(&again).expect("read") == std::fs::read(&out).expect("read"),
            "{format:?} output is not deterministic"
        );
        // Independent frames: xz lists one stream per 8 MiB chunk.
        if format == Format::Xz {
            let list = sh(&format!("xz -l --robot {}", out.display()));
            assert!(list.contains("totals\t4\t"), "expected 4 streams: {list}");
        }
    }
}

#[test]
fn bmaptool_copy_accepts_our_bmap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = d.join("node.img");
    standard_image(&img);
    let bmap = Bmap::of_image(&img).expect("bmap");
    assert_eq!(bmap.ranges.len(), 3);
    common::write(&d.join("node.bmap"), bmap.to_xml().as_bytes());
    sh(&format!(
        "bmaptool copy --bmap {p}/node.bmap {p}/node.img {p}/copy.img 2>&1 && cmp {p}/node.img {p}/copy.img",
        p = d.display()
    ));
    // A damaged bmap is refused by its checksum.
    let damaged = bmap
        .to_xml()
        .replacen("<BlockSize> 4096", "<BlockSize>  4096", 1);
    common::write(&d.join("bad.bmap"), damaged.as_bytes());
    let out = std::process::Command::new("bmaptool")
        .args(["copy", "--bmap"])
        .arg(d.join("bad.bmap"))
        .arg(&img)
        .arg(d.join("copy2.img"))
        .output()
        .expect("run bmaptool");
    assert!(
        !out.status.success(),
        "bmaptool accepted a bmap with a wrong checksum"
    );
}

/// `.bmap` ranges are cut at chunk boundaries (so compressed output hashes them from the
/// chunks in memory); bmaptool and `piimg flash` accept and verify such a map, and a
/// compressed publish writes the same map a fresh read of the image gives.
#[test]
fn ranges_cut_at_chunk_boundaries_are_accepted_and_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = d.join("node.img");
    let chunk = piimg::image::CHUNK_SIZE;
    let bytes = common::sparse_image(
        &img,
        3 * chunk + 5000,
        &[
            (chunk - 300_000, 2_000_000),
            (2 * chunk + 4096, chunk as usize),
        ],
    );
    let bmap = Bmap::of_image(&img).expect("bmap");
    let firsts: Vec<u64> = bmap.ranges.iter().map(|r| r.first).collect();
    let b = chunk / 4096;
    assert_eq!(firsts, vec![(chunk - 300_000) / 4096, b, 2 * b + 1, 3 * b]);
    let out = d.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let json = serde_json::json!({});
    let done = publish(&PublishRequest {
        out_dir: &out,
        node: "n",
        image: &img,
        format: Format::Zstd,
        build_json: &json,
    })
    .expect("publish");
    assert_eq!(
        std::fs::read_to_string(&done.bmap).expect("read"),
        bmap.to_xml()
    );
    sh(&format!(
        "bmaptool copy --bmap {} {} {p}/copy.img 2>&1 && cmp {p}/copy.img {}",
        done.bmap.display(),
        done.image.display(),
        img.display(),
        p = d.display()
    ));
    let target = d.join("card");
    let report = piimg::flash::flash(&piimg::flash::FlashRequest {
        image: done.image.clone(),
        device: target.clone(),
        bmap: Some(done.bmap.clone()),
        force: false,
        system: piimg::flash::SystemPaths::default(),
        progress: false,
        direct: false,
    })
    .expect("piimg flash");
    assert!(report.verified);
    assert!(std::fs::read(&target).expect("read") == bytes);
}

#[test]
fn publish_writes_every_output_0600_and_checkable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = d.join("work.img");
    standard_image(&img);
    let out = d.join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let json = serde_json::json!({"node": "worker-2", "inputs": {"base": "abc"}});
    for format in [Format::Raw, Format::Zstd] {
        let done = publish(&PublishRequest {
            out_dir: &out,
            node: "worker-2",
            image: &img,
            format,
            build_json: &json,
        })
        .expect("publish");
        sh(&format!(
            "cd {} && sha256sum -c {}",
            out.display(),
            done.checksum.display()
        ));
        for path in [&done.image, &done.checksum, &done.bmap, &done.build_json] {
            let mode = std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&done.build_json).expect("read")).expect("json");
        assert_eq!(back, json);
        if format == Format::Raw {
            assert!(allocated(&done.image) < 6 << 20, "raw output not sparse");
        }
        sh(&format!(
            "bmaptool copy --bmap {} {} {}/flashed.img 2>&1 && cmp {}/flashed.img {}",
            done.bmap.display(),
            done.image.display(),
            d.display(),
            d.display(),
            img.display()
        ));
    }
    assert_eq!(
        names(&out),
        vec![
            "worker-2.bmap",
            "worker-2.build.json",
            "worker-2.img",
            "worker-2.img.sha256",
            "worker-2.img.zst",
            "worker-2.img.zst.sha256",
        ]
    );
}

/// `piimg build` hands its work image over: a raw output is that file renamed (no second copy),
/// with the same bytes, holes, mode 0600 and checkable sidecars as a copying publish.
#[test]
fn publish_moving_renames_the_image_into_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = d.join("out");
    let work = out.join(".work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let img = work.join("worker-2.img");
    let bytes = standard_image(&img);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let copy = d.join("copied");
    std::fs::create_dir(&copy).expect("mkdir");
    let json = serde_json::json!({"node": "worker-2"});
    let req = PublishRequest {
        out_dir: &copy,
        node: "worker-2",
        image: &img,
        format: Format::Raw,
        build_json: &json,
    };
    let copied = publish(&req).expect("publish");
    let moved = publish_moving(
        &PublishRequest {
            out_dir: &out,
            ..req
        },
        None,
    )
    .expect("publish_moving");
    assert!(!img.exists(), "the work image was copied, not moved");
    assert!(std::fs::read(&moved.image).expect("read") == bytes);
    assert_eq!(moved.image_sha256, copied.image_sha256);
    for (a, b) in [
        (&moved.bmap, &copied.bmap),
        (&moved.build_json, &copied.build_json),
    ] {
        assert_eq!(
            std::fs::read(a).expect("read"),
            std::fs::read(b).expect("read")
        );
    }
    assert!(allocated(&moved.image) < 6 << 20, "raw output not sparse");
    for path in [
        &moved.image,
        &moved.checksum,
        &moved.bmap,
        &moved.build_json,
    ] {
        let mode = std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    sh(&format!(
        "cd {} && sha256sum -c worker-2.img.sha256",
        out.display()
    ));
}

/// A rename that fails after the image was moved (here: a folder sits where the build record
/// goes) leaves no output of this build, the moved image included.
#[test]
fn publish_moving_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let work = out.join(".work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let img = work.join("worker-2.img");
    standard_image(&img);
    std::fs::create_dir(out.join("worker-2.build.json")).expect("mkdir");
    std::fs::write(out.join("worker-2.build.json").join("x"), b"x").expect("write");
    let json = serde_json::json!({});
    publish_moving(
        &PublishRequest {
            out_dir: &out,
            node: "worker-2",
            image: &img,
            format: Format::Raw,
            build_json: &json,
        },
        None,
    )
    .expect_err("a folder in the way must fail the publish");
    assert_eq!(names(&out), vec![".work", "worker-2.build.json"]);
    assert!(
        names(&work).is_empty(),
        "left in the work folder: {:?}",
        names(&work)
    );
}

#[test]
fn publish_refuses_a_bad_node_name_and_a_missing_folder_leaving_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("work.img");
    standard_image(&img);
    let json = serde_json::json!({});
    let req = PublishRequest {
        out_dir: dir.path(),
        node: "../evil",
        image: &img,
        format: Format::Raw,
        build_json: &json,
    };
    assert!(publish(&req).is_err());
    let missing = dir.path().join("nope");
    let err = publish(&PublishRequest {
        out_dir: &missing,
        node: "w",
        ..req
    })
    .expect_err("missing folder");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(names(dir.path()), vec!["work.img"]);
}

const CHILD_ENV: &str = "PIIMG_TEST_PUBLISH_CHILD";

/// Runs the publish below in a child process whose file-size limit is 2 MiB and that ignores
/// SIGXFSZ, so writes fail with EFBIG like on a full disk.
#[test]
fn publish_under_a_file_size_limit_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("work.img");
    standard_image(&img);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let exe = std::env::current_exe().expect("test binary");
    for format in ["raw", "zstd"] {
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 4096; exec \"$0\" --exact publish_child --nocapture --test-threads=1")
            .arg(&exe)
            .env(CHILD_ENV, dir.path())
            .env("PIIMG_TEST_FORMAT", format)
            .output()
            .expect("run child");
        assert!(
            child.status.success(),
            "child failed for {format}: {}{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        assert!(names(&out).is_empty(), "left behind: {:?}", names(&out));
    }
}

/// The child half of the test above; does nothing in a normal run.
#[test]
fn publish_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let format = match std::env::var("PIIMG_TEST_FORMAT").as_deref() {
        Ok("zstd") => Format::Zstd,
        _ => Format::Raw,
    };
    let json = serde_json::json!({});
    let err = publish(&PublishRequest {
        out_dir: &dir.join("out"),
        node: "worker-2",
        image: &dir.join("work.img"),
        format,
        build_json: &json,
    })
    .expect_err("publish must fail past the file-size limit");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot write") && msg.contains("worker-2.img"),
        "{msg}"
    );
}
