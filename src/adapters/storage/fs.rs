//! Local disk (`STORAGE_ADAPTER=fs`).

use std::path::PathBuf;

use crate::config::env::{ConfigError, Env};

#[cfg(feature = "storage-fs")]
mod disk;
#[cfg(feature = "storage-fs")]
pub use disk::FsStorage;

#[derive(Clone, Debug)]
pub struct FsSettings {
    /// `FS_STORAGE_ROOT` (required): the directory objects are stored under.
    pub root: PathBuf,
}

impl FsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(FsSettings { root: env.required("FS_STORAGE_ROOT")?.into() })
    }
}
