//! Where a plan's edits are written: an image file edited in place, or any [`Device`] (the
//! copy-on-write overlay of a compressed build). The filesystems are reached the same way in
//! both cases, so the edits cannot differ between them.

use super::{ApplyError, Located};
use crate::disk::{self, Partition, PartitionView};
use crate::fs::ext4::{Access, Ext4};
use crate::image::{Device, DeviceCursor, FileDevice};
use std::path::Path;
use std::sync::Arc;

/// The image being edited.
pub(super) enum Target<'a> {
    /// An image file, edited in place.
    File(&'a Path),
    /// A device, named by it for messages.
    Device(Arc<dyn Device>),
}

impl Target<'_> {
    /// The image's name in messages.
    pub fn name(&self) -> &Path {
        match self {
            Target::File(path) => path,
            Target::Device(device) => device.name(),
        }
    }

    /// A window onto partition `part`, writable or not.
    pub fn partition(
        &self,
        part: &Partition,
        writable: bool,
    ) -> Result<PartitionView<DeviceCursor>, ApplyError> {
        let device: Arc<dyn Device> =
            match self {
                Target::File(path) => Arc::new(FileDevice::open(path, writable).map_err(|e| {
                    ApplyError::Partition {
                        image: path.to_path_buf(),
                        partition: part.number,
                        source: std::io::Error::new(e.kind(), format!("cannot open: {e}")),
                    }
                })?),
                Target::Device(device) => device.clone(),
            };
        disk::device_partition(device, part).map_err(|source| ApplyError::Partition {
            image: self.name().to_path_buf(),
            partition: part.number,
            source,
        })
    }

    /// The root filesystem, opened for `access`.
    pub fn open_root(&self, located: &Located, access: Access) -> Result<Ext4, ApplyError> {
        let opened = match self {
            Target::File(path) => Ext4::open(path, located.root.start, access),
            Target::Device(device) => Ext4::open_device(device.clone(), located.root.start, access),
        };
        let fs = opened.map_err(|source| ApplyError::Ext4 {
            image: self.name().to_path_buf(),
            partition: located.root.number,
            edit: "opening the root filesystem".into(),
            source: Box::new(source),
        })?;
        // A filesystem bigger than its partition (a table edited by hand, a damaged image)
        // would be published and then not mount: the kernel refuses it.
        if fs.size_bytes() > located.root.size {
            return Err(ApplyError::FsLargerThanPartition {
                image: self.name().to_path_buf(),
                partition: located.root.number,
                fs_bytes: fs.size_bytes(),
                partition_bytes: located.root.size,
            });
        }
        Ok(fs)
    }
}
