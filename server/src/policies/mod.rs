//! Policy files: admins declare roles, grants, row-level security policies, storage buckets and their
//! rules, and realtime's published tables and private-channel rules in `policies/*.toml`;
//! doska reads them (`parse`), turns them into PostgreSQL objects (`compile`), makes the database match
//! in one transaction (`apply`), and re-applies them when the files change while serving (`watch`).
//! Access checks stay in PostgreSQL: nothing here decides a request.

pub mod apply;
pub mod compile;
pub mod parse;
pub mod pattern;
#[cfg(test)]
mod props;
pub mod sections;
pub mod syntax;
pub mod watch;

pub use apply::{ApplyError, Mode, Outcome, apply};
pub use parse::{Diagnostic, Loc, Sources, read_dir};
