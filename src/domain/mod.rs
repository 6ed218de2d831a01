//! The domain: plain types and pure rules of the contract. No I/O, no async runtime, no
//! adapter crate.

pub mod access;
pub mod artifact;
pub mod catalog;
pub mod error;
pub mod file;
pub mod humanize;
pub mod job;
pub mod job_run;
pub mod manifest;
pub mod manifest_trim;
pub mod paging;
pub mod run_request;

pub use error::{Error, Fault, FieldErrors};
