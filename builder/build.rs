//! Generates the libext2fs bindings used by `fs::ext4` and links the system library.
//!
//! bindgen (rather than hand-written `extern` blocks) because `struct_ext2_filsys`,
//! `ext2_super_block` and `ext2_inode_large` are large C structs whose layouts must match the
//! installed headers exactly; generating them from those headers makes a mismatch impossible.
//! The allowlist keeps the output to the functions, types and constants the module uses.

use std::env;
use std::path::PathBuf;

const HEADER: &str = "src/fs/ext4/ext2fs.h";

fn main() {
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-changed=build.rs");

    let ext2fs = pkg_config::Config::new()
        .atleast_version("1.47")
        .probe("ext2fs")
        .unwrap_or_else(|e| {
            panic!(
                "libext2fs >= 1.47 not found via pkg-config ({e}); install Debian's libext2fs-dev"
            )
        });
    let com_err = pkg_config::Config::new()
        .probe("com_err")
        .unwrap_or_else(|e| {
            panic!("libcom_err not found via pkg-config ({e}); install comerr-dev")
        });

    let mut builder = bindgen::Builder::default()
        .header(HEADER)
        .allowlist_function(
            "ext2fs_(open2|close2|free|flush|flush_icache|read_bitmaps|namei|lookup)",
        )
        .allowlist_function("ext2fs_(read|write)_inode_full|ext2fs_write_new_inode")
        .allowlist_function("ext2fs_(new_inode|link|unlink|expand_dir|inode_alloc_stats2)")
        .allowlist_function("ext2fs_(mkdir|symlink|block_iterate3|fallocate|dir_iterate2)")
        .allowlist_function("ext2fs_extent_(open2|free)")
        .allowlist_function("ext2fs_file_(open2|read|write|close|llseek|set_size2)")
        .allowlist_function("ext2fs_(is_fast_symlink|inode_has_valid_blocks2)")
        .allowlist_function("ext2fs_(adjust_ea_refcount3|block_alloc_stats2)")
        .allowlist_function("ext2fs_(blocks_count|free_blocks_count)")
        .allowlist_function("error_message|initialize_ext2_error_table")
        .allowlist_var("IO_FLAG_RW")
        .allowlist_type("struct_io_manager|struct_io_channel|io_manager|io_channel")
        .allowlist_var("EXT2_ET_.*|EXT2_FLAG_(RW|64BITS)|EXT2_FILE_WRITE")
        .allowlist_var("EXT2_FALLOCATE_.*|BLOCK_FLAG_READ_ONLY")
        .allowlist_var("EXT[234]_FEATURE_(COMPAT|INCOMPAT|RO_COMPAT)_.*")
        .allowlist_var(
            "EXT2_(ROOT_INO|VALID_FS|ERROR_FS|INDEX_FL|FT_.*)|EXT4_(EXTENTS|INLINE_DATA)_FL",
        )
        .allowlist_type("ext2_inode_large|ext2_super_block|ext2_dir_entry")
        .allowlist_type("struct_ext2_filsys")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in ext2fs
        .include_paths
        .iter()
        .chain(com_err.include_paths.iter())
    {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {HEADER} ({e}); install libclang-dev"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("ext2fs_bindings.rs"))
        .expect("write ext2fs bindings into OUT_DIR");
}
