//! The current time, for the `*_humanized` fields and row timestamps.

use crate::domain::catalog::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}
