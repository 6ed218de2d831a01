//! Jade: a dbt Cloud Administrative API v2 clone over Datacoves and Airflow, plus
//! Datacoves' manifest and file API. See `ARCHITECTURE` in the README for the layout:
//! `domain` <- `ports` <- `app` <- `adapters`, wired together in `startup`.

pub mod adapters;
pub mod app;
pub mod config;
#[cfg(feature = "http")]
pub mod demo;
pub mod domain;
pub mod ports;
pub mod startup;
