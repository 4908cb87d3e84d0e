//! The node side of piimg.
//!
//! The library half owns the schemas that cross the boundary between the builder (which writes
//! them into an image) and the node (which reads them at first boot), so the two can never drift:
//! both crates compile against the same types: [`config`] (`/etc/piimg/node.toml`), [`report`]
//! (the signed readiness report and its `sign`/`verify`), [`unit`] (the systemd unit text).
//!
//! Fleet images (one image for several boards) add [`fleet`] (the fleet table and each
//! member's files, written by the builder), [`identify`] (the board takes its node by
//! [`hardware`] before the network starts, rewriting `/etc/hosts` by [`etc_hosts`], the rule
//! the builder uses too) and [`unmatched`] (a board that took no node reports what it is).
//!
//! The rest is the init itself: [`run`] sequences the steps [`storage`], [`k3s`] and
//! [`announce`] (and [`binds`], [`rootfs`], [`cmdline`]), each taking the run's [`context`] and
//! saving progress in [`state`]; [`system`] is the seam to the machine, speaking the types of
//! [`machine`] (which the kernel side, `sysfs`, fills in).
//!
//! # Test seams
//! Not product features, hidden from `--help`, documented here so tests can drive the real
//! binary without a real node:
//! - `--root DIR`: prefix for every node path.
//! - `--devices FILE`: TOML `[[disk]]` entries (`path`, `ids`, `serial`, `size`, `transport`,
//!   `root`, `root_partition`) replace sysfs discovery; partitions are then opened at an offset
//!   in the file. The root is partition `root_partition` of the `root` disk, sized as its table
//!   says (as a kernel reads it at boot); telling the kernel a new size is recorded as
//!   `resizepart DISK N SECTORS` in `kernel.log` of the `--fake-mount` folder, and the real
//!   `resize2fs` grows a partition-sized copy of the filesystem that is written back.
//! - `--fake-mount DIR`: mounts and bind mounts are recorded as files in DIR, one per mount
//!   point (`source=… offset=… [root=/folder] fstype=…`), and appended to `DIR/order.log`
//!   (the mount points are created).
//! - `--systemctl PATH`, `--k3s PATH`, `--update-grub PATH`, `--kubelet-healthz URL`: stand-ins
//!   for systemd, k3s, GRUB and the kubelet. With `--root`, `/proc/cmdline` is read under it.
//! - `--backoff-ms N`: backoff unit (1000 on a node).
//! - `PIIMG_FIRSTBOOT_CRASH_AFTER=<point>`: SIGKILL after `partition`, `format`, `grow-table`,
//!   or a step by its name (`grow-root`, `storage`, `k3s-data`, `join`, `prune`, `report`, …).

pub mod announce;
pub mod binds;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod context;
pub mod crash;
pub mod etc_hosts;
pub mod fleet;
pub mod hardware;
pub mod http;
pub mod identify;
pub mod k3s;
pub mod logging;
pub mod machine;
pub mod notify;
pub mod paths;
pub mod report;
pub mod rootfs;
pub mod run;
pub mod state;
pub mod status;
pub mod storage;
mod sysfs;
pub mod system;
pub mod unit;
pub mod unmatched;
