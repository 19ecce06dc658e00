//! Layers as tar streams and snapshots as trees: the bridge between the content store and the
//! snapshotter.
//!
//! - [`apply`] unpacks a layer (plain, gzip or zstd tar) onto the mounts of an active snapshot,
//!   honouring OCI whiteouts (`.wh.<name>`) and opaque directories (`.wh..wh..opq`), and
//!   returns the digest of the uncompressed stream (the layer's *diff ID*).
//! - [`compare`] walks two trees and writes the changes from the lower to the upper one as a
//!   layer tar.
//!
//! A layer is hostile until proven otherwise. Every file-system call during apply is made
//! relative to a descriptor of the target root, with paths resolved by the kernel as if the
//! target were `/` (`openat2` with `RESOLVE_IN_ROOT`), so no entry, symlink or hard link can
//! reach outside it. Entries with `..` components are refused; absolute paths are taken
//! relative to the root, as tar does; device nodes are not created (a layer has no business
//! carrying them; the runtime makes the container's devices).

mod apply;
mod compare;

use std::path::PathBuf;

pub use apply::{Applied, ApplyOptions, apply, apply_to_mounts};
pub use compare::{compare, compare_mounts, compare_mounts_skipping};

use crate::error::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: &'static str },
    #[error("layer is not a valid {format} stream: {source}")]
    Decompress {
        format: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("layer archive is truncated")]
    Truncated,
    #[error("malformed layer archive: {source}")]
    Malformed {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "layer expands past the limit of {limit} bytes (a compression bomb, or raise max_layer_size)"
    )]
    TooLarge { limit: u64 },
    #[error("layer entry {entry:?}: {source}")]
    Entry {
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

crate::error::from_module_error!(DiffError);

impl DiffError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DiffError::UnsafeEntry { .. }
            | DiffError::Decompress { .. }
            | DiffError::Truncated
            | DiffError::Malformed { .. }
            | DiffError::TooLarge { .. } => ErrorKind::InvalidArgument,
            DiffError::Entry { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput => {
                    ErrorKind::InvalidArgument
                }
                _ => crate::error::io_kind(source),
            },
            DiffError::Io { source, .. } => crate::error::io_kind(source),
        }
    }
}

/// The compression a layer stream uses, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_by_magic_and_its_media_type() {
        for (head, c, media) in [
            (
                &[0x1f, 0x8b, 8][..],
                Compression::Gzip,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (
                &[0x28, 0xb5, 0x2f, 0xfd, 0][..],
                Compression::Zstd,
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (
                b"etc/",
                Compression::None,
                "application/vnd.oci.image.layer.v1.tar",
            ),
            (
                &[0x1f][..],
                Compression::None,
                "application/vnd.oci.image.layer.v1.tar",
            ),
            (
                &[0x28, 0xb5, 0x2f][..],
                Compression::None,
                "application/vnd.oci.image.layer.v1.tar",
            ),
        ] {
            assert_eq!(Compression::detect(head), c, "{head:?}");
            assert_eq!(c.oci_layer_media_type(), media);
        }
    }
}
