//! Azure Blob Storage or Azurite (`STORAGE_ADAPTER=blob`).

use secrecy::SecretString;

use crate::config::env::{ConfigError, Env};

#[cfg(feature = "storage-blob")]
mod client;
#[cfg(feature = "storage-blob")]
pub use client::AzureBlobStorage;

/// How to reach and sign in to the storage account.
#[derive(Clone, Debug)]
pub enum BlobConnection {
    /// `DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...[;BlobEndpoint=...]`
    /// (a `BlobEndpoint`, as Azurite's, is used as the service URL; `SharedAccessSignature`
    /// works instead of `AccountKey`).
    ConnectionString(SecretString),
    /// An account in the public Azure cloud and one of its access keys.
    AccountKey { account: String, key: SecretString },
}

#[derive(Clone, Debug)]
pub struct BlobSettings {
    pub container: String,
    pub connection: BlobConnection,
}

impl BlobSettings {
    /// `BLOB_CONTAINER`, and `BLOB_STORAGE_ACCOUNT_CONNECTION_STRING` or else
    /// `BLOB_STORAGE_ACCOUNT_NAME` with `BLOB_STORAGE_ACCOUNT_KEY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(BlobSettings {
            container: env.required("BLOB_CONTAINER")?,
            connection: match env.get("BLOB_STORAGE_ACCOUNT_CONNECTION_STRING") {
                Some(connection_string) => BlobConnection::ConnectionString(connection_string.into()),
                None => BlobConnection::AccountKey {
                    account: env.required("BLOB_STORAGE_ACCOUNT_NAME")?,
                    key: env.required("BLOB_STORAGE_ACCOUNT_KEY")?.into(),
                },
            },
        })
    }
}
