//! One node's build driven through the library (`piimg::build`), with no command-line types:
//! what a program embedding piimg does. Its image must be the one `piimg build` makes from the
//! same inputs, byte for byte, and pass the real checkers.

use piimg::build::{build, BuildRequest, Job};
use piimg::output::Format;
use piimg::source::Cache;
use piimg::spec::{self, Overrides};
use piimg_e2e::cluster::{TestCluster, EPOCH};
use piimg_e2e::{self as e2e, inspect_json};

#[test]
fn the_library_builds_a_node_as_the_command_does() {
    let tc = TestCluster::new();
    let overrides = Overrides {
        source_date_epoch: Some(EPOCH.parse().unwrap()),
        ..Overrides::default()
    };
    let spec = spec::resolve(&tc.profiles, "worker-1", &overrides).expect("resolve worker-1");
    let lib_out = tc.dir.path().join("lib-out");
    let mut announced = Vec::new();
    let built = build(
        BuildRequest {
            jobs: vec![Job::Node(Box::new(spec))],
            out_dir: lib_out.clone(),
            format: Format::Zstd,
            offline: false,
            cache: Cache::new(tc.cache.clone()),
            imager_base: piimg::output::ImagerBase::OutDir,
        },
        &mut |b| {
            announced.push(b.node.clone());
            Ok(())
        },
    )
    .expect("library build");
    assert_eq!(announced, ["worker-1"]);
    assert_eq!(built.len(), 1);
    let image = &built[0].published.image;
    assert_eq!(image, &lib_out.join("worker-1.img.zst"));

    // The same node through the binary: the same bytes.
    let cli_image = tc.build("worker-1", "zst", &[]);
    assert_eq!(
        std::fs::read(image).unwrap(),
        std::fs::read(&cli_image).unwrap(),
        "the library's image differs from the command's"
    );
    let raw = tc.dir.path().join("worker-1.img");
    let status = std::process::Command::new("zstd")
        .args(["-dq", "-o"])
        .arg(&raw)
        .arg(image)
        .status()
        .unwrap();
    assert!(status.success(), "zstd -d");
    e2e::check_all(&raw);
    assert_eq!(inspect_json(&raw)["piimg"]["node"], "worker-1");
    // Nothing but the outputs in the output folder: the work folder is gone.
    let mut names: Vec<String> = std::fs::read_dir(&lib_out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "os_list.json",
            "worker-1.bmap",
            "worker-1.build.json",
            "worker-1.img.zst",
            "worker-1.img.zst.sha256"
        ]
    );
}
