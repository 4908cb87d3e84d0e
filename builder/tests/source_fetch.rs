//! Fetching and caching sources from a local HTTP server: resume after a cut, wrong digest,
//! truncated body, HTTP errors, offline hits and misses, corrupt cache entries, local paths.

mod io_support;
use io_support as common;

use common::http::{Served, Server};
use common::{noise, sh};
use piimg::source::{resolve, resolve_base, Cache, SourceError, SourceSpec};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn spec(location: &str, sha256: Option<&str>) -> SourceSpec {
    SourceSpec {
        location: location.to_string(),
        sha256: sha256.map(str::to_string),
    }
}

fn blobs(cache: &Cache) -> Vec<String> {
    let dir = cache.root().join("blobs/sha256");
    if dir.exists() {
        common::names(&dir)
    } else {
        Vec::new()
    }
}

#[test]
fn download_is_verified_cached_and_found_offline() {
    let server = Server::start();
    let body = noise(3 << 20, 1);
    let url = server.serve_bytes("/k3s", body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().join("cache"));
    let digest = sha(&body);

    let got = resolve(&spec(&url, Some(&digest)), &cache, false).expect("fetch");
    assert_eq!(got.sha256.as_str(), digest);
    assert!(std::fs::read(&got.path).expect("read") == body);
    assert_eq!(got.path, cache.root().join("blobs/sha256").join(&digest));

    let before = server.requests();
    let again = resolve(&spec(&url, Some(&digest)), &cache, true).expect("offline hit");
    assert_eq!(again, got);
    assert_eq!(
        server.requests(),
        before,
        "offline hit must not touch the network"
    );
}

#[test]
fn offline_miss_names_the_digest_and_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().to_path_buf());
    let digest = "ab".repeat(32);
    let err = resolve(
        &spec("https://example.invalid/x.img.xz", Some(&digest)),
        &cache,
        true,
    )
    .expect_err("offline miss");
    let msg = err.to_string();
    assert!(matches!(err, SourceError::OfflineMissing { .. }), "{msg}");
    assert!(
        msg.contains(&digest) && msg.contains("without --offline"),
        "{msg}"
    );
    let err =
        resolve(&spec("https://example.invalid/x", None), &cache, true).expect_err("unpinned");
    assert!(err.to_string().contains("no pinned sha256"), "{err}");
}

#[test]
fn a_cut_download_resumes_with_range() {
    let server = Server::start();
    let body = noise(2 << 20, 2);
    let url = server.serve(
        "/base.img.xz",
        Served {
            body: body.clone(),
            cut_at: Some(700_000),
            cut_times: 1,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().to_path_buf());
    let digest = sha(&body);
    let err = resolve(&spec(&url, Some(&digest)), &cache, false).expect_err("cut");
    let msg = err.to_string();
    assert!(
        matches!(err, SourceError::TruncatedDownload { .. }),
        "{msg}"
    );
    assert!(msg.contains(&url) && msg.contains("700000"), "{msg}");
    assert!(
        blobs(&cache).is_empty(),
        "a partial download reached the cache"
    );

    let got = resolve(&spec(&url, Some(&digest)), &cache, false).expect("resume");
    assert!(std::fs::read(&got.path).expect("read") == body);
    assert_eq!(server.ranges(), vec!["bytes=700000-".to_string()]);
}

#[test]
fn a_body_that_always_ends_early_is_a_truncated_download() {
    let server = Server::start();
    let body = noise(1 << 20, 3);
    let url = server.serve(
        "/short",
        Served {
            body: body.clone(),
            cut_at: Some(1000),
            cut_times: usize::MAX,
        },
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().to_path_buf());
    for _ in 0..2 {
        let err = resolve(&spec(&url, Some(&sha(&body))), &cache, false).expect_err("truncated");
        assert!(
            matches!(err, SourceError::TruncatedDownload { .. }),
            "{err}"
        );
    }
    assert!(blobs(&cache).is_empty());
}

#[test]
fn wrong_digest_and_http_errors_are_refused() {
    let server = Server::start();
    let body = noise(100_000, 4);
    let url = server.serve_bytes("/file", body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().to_path_buf());
    let wrong = "0".repeat(64);
    let err = resolve(&spec(&url, Some(&wrong)), &cache, false).expect_err("wrong digest");
    let msg = err.to_string();
    assert!(matches!(err, SourceError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&url) && msg.contains(&wrong) && msg.contains(&sha(&body)),
        "{msg}"
    );
    assert!(blobs(&cache).is_empty());
    assert!(common::names(&cache.root().join("partial")).is_empty());

    let err = resolve(
        &spec(&format!("{}/missing", server.base), None),
        &cache,
        false,
    )
    .expect_err("404");
    assert!(err.to_string().contains("404"), "{err}");
    let err = resolve(&spec(&url, Some("xyz")), &cache, false).expect_err("bad pin");
    assert!(matches!(err, SourceError::BadDigest { .. }), "{err}");
}

#[test]
fn a_corrupt_cache_entry_is_evicted_and_fetched_again() {
    let server = Server::start();
    let body = noise(200_000, 5);
    let url = server.serve_bytes("/a", body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().to_path_buf());
    let digest = sha(&body);
    let got = resolve(&spec(&url, Some(&digest)), &cache, false).expect("fetch");
    std::fs::write(&got.path, b"rotten").expect("damage");
    let before = server.requests();
    let again = resolve(&spec(&url, Some(&digest)), &cache, false).expect("refetch");
    assert!(std::fs::read(&again.path).expect("read") == body);
    assert_eq!(server.requests(), before + 1);
}

#[test]
fn unpinned_url_and_local_override_record_their_digest() {
    let server = Server::start();
    let body = noise(50_000, 6);
    let url = server.serve_bytes("/u", body.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::new(dir.path().join("cache"));
    let got = resolve(&spec(&url, None), &cache, false).expect("unpinned");
    assert_eq!(got.sha256.as_str(), sha(&body));

    let local = dir.path().join("k3s");
    std::fs::write(&local, &body).expect("write");
    let got = resolve(&spec(&local.display().to_string(), None), &cache, true).expect("local");
    assert_eq!(got.path, local);
    assert_eq!(got.sha256.as_str(), sha(&body));
    let err = resolve(
        &spec(&local.display().to_string(), Some(&"1".repeat(64))),
        &cache,
        true,
    )
    .expect_err("local mismatch");
    assert!(
        err.to_string().contains(&local.display().to_string()),
        "{err}"
    );
    let err = resolve(
        &spec(&dir.path().join("nope").display().to_string(), None),
        &cache,
        false,
    )
    .expect_err("missing local");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_base_is_decompressed_once_into_the_cache() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("base.img");
    let bytes = common::standard_disk_image(&raw);
    sh(&format!(
        "xz -1 -T2 --block-size=4MiB -c {} > {}/base.img.xz",
        raw.display(),
        dir.path().display()
    ));
    let xz = std::fs::read(dir.path().join("base.img.xz")).expect("read");
    let url = server.serve_bytes("/base.img.xz", xz.clone());
    let cache = Cache::new(dir.path().join("cache"));
    let src = spec(&url, Some(&sha(&xz)));
    let base = resolve_base(&src, &cache, false).expect("base");
    assert!(std::fs::read(&base.image).expect("read") == bytes);
    assert_eq!(
        base.image,
        cache.root().join(format!("bases/{}.img", sha(&xz)))
    );
    assert!(
        common::allocated(&base.image) < 6 << 20,
        "cached base is not sparse"
    );
    let before = server.requests();
    let again = resolve_base(&src, &cache, true).expect("warm");
    assert_eq!(again, base);
    assert_eq!(server.requests(), before);
}

#[test]
fn cache_root_follows_xdg_then_home() {
    let root = |xdg: Option<&str>, home: Option<&str>| {
        Cache::default_root(xdg.map(Into::into), home.map(Into::into))
    };
    assert_eq!(
        root(Some("/x"), Some("/h")).expect("xdg"),
        std::path::Path::new("/x/piimg")
    );
    assert_eq!(
        root(Some("rel"), Some("/h")).expect("home"),
        std::path::Path::new("/h/.cache/piimg")
    );
    assert_eq!(
        root(None, Some("/h")).expect("home"),
        std::path::Path::new("/h/.cache/piimg")
    );
    assert!(matches!(root(None, None), Err(SourceError::NoCacheDir)));
}
