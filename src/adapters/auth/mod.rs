//! Token verifiers.
