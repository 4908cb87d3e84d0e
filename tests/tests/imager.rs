//! `os_list.json` (Raspberry Pi Imager's repository file) as `piimg build` writes it, checked
//! the way rpi-imager reads it. The checks are derived from raspberrypi/rpi-imager at
//! v2.0.11.1-1-g72ad1179 (commit 72ad1179ff46a8355291898416fe65cbe6bbd450), not copied:
//! - `doc/json-schema/os-list-schema.json`: top level only `imager` and `os_list`
//!   (`additionalProperties: false`), `imager` only its listed keys; an OS entry needs
//!   `name`, `description`, `icon`, `url` (strings), `extract_size`, `image_download_size`
//!   (integers), `extract_sha256`, `release_date` (strings), `devices` (array); a device
//!   needs `name`, `description` (strings) and `tags` (array); `init_format` is one of
//!   `"", systemd, cloudinit, cloudinit-rpi, rpi-preseed, none`.
//! - `src/oslistmodel.cpp` prunes any other `init_format`; `src/imagewriter.cpp` maps
//!   `none` to `""` and offers customisation only for a non-empty one; it keeps an entry
//!   for a device when one of the entry's `devices` is among the device's `tags`.
//! - `src/downloadextractthread.cpp`: an image not a multiple of 512 bytes is not a valid
//!   disk image (padded there); Imager checks `extract_sha256` over the extracted bytes.
//!
//! Sizes and digests are checked against the files beside the list, decompressed by the
//! `zstd` / `xz` command-line tools, not by piimg's code.

use piimg_e2e::cluster::{TestCluster, EPOCH};
use piimg_e2e::{self as e2e};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const IMAGER_KEYS: [&str; 8] = [
    "latest_version",
    "refresh_interval_minutes",
    "refresh_jitter_minutes",
    "url",
    "default_os",
    "embedded_default_os",
    "embedded_default_destination",
    "devices",
];
const INIT_FORMATS: [&str; 6] = [
    "",
    "systemd",
    "cloudinit",
    "cloudinit-rpi",
    "rpi-preseed",
    "none",
];

fn string<'a>(v: &'a Value, key: &str, what: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {key} is not a string: {}", v[key]))
}

fn integer(v: &Value, key: &str, what: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: {key} is not a non-negative integer: {}", v[key]))
}

/// `file:///a%20b/c` → `/a b/c`.
fn file_path(url: &str) -> PathBuf {
    let path = url
        .strip_prefix("file://")
        .unwrap_or_else(|| panic!("{url}: not a file:// URL"));
    assert!(path.starts_with('/'), "{url}: not absolute");
    let mut out = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&path[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8(out).unwrap())
}

/// Size and SHA-256 of the raw image, decompressed by the command-line tool.
fn raw_digest(image: &Path) -> (u64, String) {
    let name = image.to_string_lossy();
    let bytes = if name.ends_with(".img") {
        std::fs::read(image).unwrap()
    } else {
        let tool = if name.ends_with(".zst") {
            "zstd"
        } else if name.ends_with(".xz") {
            "xz"
        } else {
            "gzip"
        };
        let out = Command::new(tool)
            .args(["-dc"])
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool} -dc {name}");
        out.stdout
    };
    (bytes.len() as u64, hex::encode(Sha256::digest(&bytes)))
}

/// Checks the whole file as Imager's parser reads it; returns the entries by name.
fn check_os_list(tc: &TestCluster, base_url: Option<&str>) -> Vec<Value> {
    let path = tc.out.join("os_list.json");
    let text = std::fs::read_to_string(&path).expect("os_list.json written");
    for secret in tc.secret_values() {
        assert!(!text.contains(&secret), "a secret is in os_list.json");
    }
    let doc: Value = serde_json::from_str(&text).expect("os_list.json is JSON");
    let top = doc.as_object().expect("top level is an object");
    for key in top.keys() {
        assert!(
            ["imager", "os_list"].contains(&key.as_str()),
            "top-level key {key}"
        );
    }
    let imager = doc["imager"].as_object().expect("imager is an object");
    for key in imager.keys() {
        assert!(IMAGER_KEYS.contains(&key.as_str()), "imager key {key}");
    }
    let devices = doc["imager"]["devices"].as_array().expect("imager.devices");
    let mut tags = Vec::new();
    for d in devices {
        string(d, "name", "device");
        string(d, "description", "device");
        for t in d["tags"].as_array().expect("device tags") {
            tags.push(t.as_str().expect("tag is a string").to_string());
        }
        if let Some(m) = d.get("matching_type") {
            assert!(["exclusive", "inclusive"].contains(&m.as_str().unwrap()));
        }
    }
    assert!(
        tags.contains(&"pi5".to_string()),
        "no Pi 5 device: {tags:?}"
    );

    let list = doc["os_list"].as_array().expect("os_list is an array");
    let date = {
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{EPOCH}"), "+%Y-%m-%d"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for e in list {
        let name = string(e, "name", "entry").to_string();
        let what = name.as_str();
        string(e, "description", what);
        string(e, "icon", what);
        let url = string(e, "url", what);
        let extract_size = integer(e, "extract_size", what);
        let extract_sha256 = string(e, "extract_sha256", what);
        let download_size = integer(e, "image_download_size", what);
        let download_sha256 = string(e, "image_download_sha256", what);
        assert_eq!(
            string(e, "release_date", what),
            date,
            "{what}: release date"
        );
        for sha in [extract_sha256, download_sha256] {
            assert!(
                sha.len() == 64
                    && sha
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "{what}: {sha} is not a SHA-256"
            );
        }
        // Customisation off, the way Imager decides it.
        let init = e.get("init_format").map_or("", |v| v.as_str().unwrap());
        assert!(
            INIT_FORMATS.contains(&init),
            "{what}: pruned by Imager: {init}"
        );
        assert!(
            init.is_empty() || init == "none",
            "{what}: customisation on: {init}"
        );
        // Offered for some device of the list.
        let entry_devices: Vec<&str> = e["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: devices"))
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(
            entry_devices.iter().any(|d| tags.iter().any(|t| t == d)),
            "{what}: no device offers it"
        );
        assert_eq!(extract_size % 512, 0, "{what}: not a multiple of 512");

        // The files beside it.
        let file_name = url.rsplit('/').next().unwrap();
        let image = match base_url {
            Some(base) => {
                assert_eq!(url, format!("{base}/{file_name}"), "{what}: URL");
                tc.out.join(file_name)
            }
            None => {
                let p = file_path(url);
                assert_eq!(
                    p,
                    std::fs::canonicalize(&tc.out).unwrap().join(file_name),
                    "{what}: URL not in the out folder"
                );
                p
            }
        };
        assert_eq!(
            std::fs::metadata(&image).unwrap().len(),
            download_size,
            "{what}: download size"
        );
        assert_eq!(
            e2e::sha256_file(&image),
            download_sha256,
            "{what}: download SHA-256"
        );
        let sidecar = std::fs::read_to_string(format!("{}.sha256", image.display())).unwrap();
        assert!(
            sidecar.starts_with(download_sha256),
            "{what}: .sha256 differs"
        );
        let (size, sha) = raw_digest(&image);
        assert_eq!(size, extract_size, "{what}: extract_size");
        assert_eq!(sha, extract_sha256, "{what}: extract_sha256");
        if let Some(bmap) = e.get("bmap_url") {
            let bmap = bmap.as_str().unwrap();
            let bmap_name = bmap.rsplit('/').next().unwrap();
            assert!(tc.out.join(bmap_name).is_file(), "{what}: bmap_url {bmap}");
        }
    }
    list.clone()
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn os_list_lists_each_worker_built_and_passes_imagers_checks() {
    let tc = TestCluster::new();
    tc.build("worker-2", "zst", &[]);
    let list = check_os_list(&tc, None);
    assert_eq!(names(&list), ["piimg worker-2"]);
    let first = std::fs::read(tc.out.join("os_list.json")).unwrap();

    // One node at a time makes the full list; a raw image is listed too.
    tc.build("worker-1", "img", &[]);
    let list = check_os_list(&tc, None);
    assert_eq!(names(&list), ["piimg worker-1", "piimg worker-2"]);

    // The amd64 control plane is not for Imager's Pi list; the others stay.
    tc.build("control-plane", "zst", &[]);
    let list = check_os_list(&tc, None);
    assert_eq!(names(&list), ["piimg worker-1", "piimg worker-2"]);

    // An image gone is dropped; a base URL rewrites every URL; same inputs, same bytes.
    for f in [
        "worker-1.img",
        "worker-1.img.sha256",
        "worker-1.bmap",
        "worker-1.build.json",
    ] {
        std::fs::remove_file(tc.out.join(f)).unwrap();
    }
    tc.build("worker-2", "zst", &[]);
    assert_eq!(
        std::fs::read(tc.out.join("os_list.json")).unwrap(),
        first,
        "not deterministic"
    );
    let base = "http://192.0.2.1:8000/cluster";
    tc.build(
        "worker-2",
        "zst",
        &["--imager-base-url", "http://192.0.2.1:8000/cluster/"],
    );
    let list = check_os_list(&tc, Some(base));
    assert_eq!(names(&list), ["piimg worker-2"]);

    // A fleet image (issue 17) is listed beside the nodes' and passes the same checks.
    let out_dir = tc.out.display().to_string();
    let fleet = tc.piimg(&[
        "build",
        "--fleet",
        "bookworm-workers",
        "--out",
        &out_dir,
        "--format",
        "zst",
        "--imager-base-url",
        "http://192.0.2.1:8000/cluster/",
    ]);
    assert!(
        fleet.status.success(),
        "{}",
        String::from_utf8_lossy(&fleet.stderr)
    );
    let list = check_os_list(&tc, Some(base));
    assert_eq!(
        names(&list),
        ["piimg fleet bookworm-workers", "piimg worker-2"]
    );
}

#[test]
fn a_relative_imager_base_url_is_refused_before_anything_is_built() {
    let tc = TestCluster::new();
    let out = tc.try_build("worker-2", "zst", &["--imager-base-url", "out/"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an absolute URL"), "{err}");
    assert!(!tc.out.join("worker-2.img.zst").exists());
}
