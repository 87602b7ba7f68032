//! The REST front door: PostgREST's dialect at `/rest/v1`. Pipeline: [`request`] (parse) →
//! [`plan`] (resolve against the [`schema`] cache) → [`sql`] (one parameterized statement) →
//! [`execute`] (the only I/O) → [`render`].

pub mod error;
pub mod grammar;
pub mod plan;
pub mod request;
pub mod schema;
pub mod sql;
