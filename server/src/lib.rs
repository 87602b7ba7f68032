//! doska: a Supabase-compatible backend in one binary. This crate is the server; `main.rs` is only the
//! command line on top of `commands`.

pub mod auth;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod db;
pub mod http;
pub mod jwt;
pub mod pg;
pub mod policies;
#[cfg(test)]
mod props;
pub mod realtime;
pub mod rest;
pub mod schools;
pub mod secret;
pub mod startup;
pub mod state;
pub mod storage;
pub mod testing;
pub mod typegen;
