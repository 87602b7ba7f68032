//! Policy files: admins declare roles, grants and row-level security policies in `policies/*.toml`;
//! doska reads them (`parse`), turns them into PostgreSQL objects (`compile`), makes the database match
//! in one transaction (`apply`), and re-applies them when the files change while serving (`watch`).
//! Access checks stay in PostgreSQL: nothing here decides a request.

pub mod apply;
pub mod compile;
pub mod parse;
pub mod testing;
pub mod watch;

pub use apply::{ApplyError, Mode, Outcome, apply};
pub use parse::{Diagnostic, Loc, Sources, read_dir};
