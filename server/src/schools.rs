//! The operator's registration of a TeacherUchit school (`doska school create`): in one transaction
//! as the admin connection, the school row, its first admin (an auth user with the app role
//! `school_admin`, e-mail confirmed, whose profile the sign-up trigger of
//! migrations/0003_teacheruchit_signup.sql makes from the metadata), `schools.admin_id`, and a first
//! join code for its teachers. Rejects, changing nothing: a database without TeacherUchit's schema,
//! a taken e-mail, and values the schema's checks refuse (each said in one line).

use deadpool_postgres::Object;
use serde_json::json;
use uuid::Uuid;

use crate::auth::users::{self, NewUser};

/// What the operator gives.
#[derive(Debug, Clone)]
pub struct NewSchool {
    pub name: String,
    pub city: String,
    pub admin_email: String,
    pub admin_name: String,
    /// The grading scale; the schema's default (1..5) when not given.
    pub grade_min: Option<i16>,
    pub grade_max: Option<i16>,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Registered {
    pub school_id: Uuid,
    pub admin_id: Uuid,
    pub admin_email: String,
    pub code: String,
}

#[derive(Debug)]
pub enum SchoolError {
    /// The database has no `public.schools` (not TeacherUchit's migrations).
    NoSchema,
    /// The `school_admin` role does not exist (TeacherUchit's policy files were not applied).
    NoRole,
    EmailTaken(String),
    /// A value the operator gave is refused (bad e-mail, empty name, scale, …).
    Invalid(String),
    Db(String),
}

impl std::fmt::Display for SchoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchoolError::NoSchema => f.write_str(
                "this database has no public.schools: run with TeacherUchit's migrations (--migrations)",
            ),
            SchoolError::NoRole => f.write_str(
                "the role school_admin does not exist: run with TeacherUchit's policy files (--policies)",
            ),
            SchoolError::EmailTaken(e) => write!(f, "a user with the e-mail {e} already exists"),
            SchoolError::Invalid(e) => f.write_str(e),
            SchoolError::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for SchoolError {}

fn db(e: tokio_postgres::Error) -> SchoolError {
    match e.code().map(|c| c.code()) {
        // check_violation, not_null_violation, string_data_right_truncation
        Some("23514" | "23502" | "22001") => SchoolError::Invalid(format!(
            "refused by the schema: {}",
            crate::db::migrate::describe(&e)
        )),
        _ => SchoolError::Db(crate::db::migrate::describe(&e)),
    }
}

fn auth(e: crate::auth::error::AuthError) -> SchoolError {
    match e {
        crate::auth::error::AuthError::Validation(m) => SchoolError::Invalid(m),
        crate::auth::error::AuthError::RoleNotAllowed(_) => SchoolError::NoRole,
        other => SchoolError::Db(other.message()),
    }
}

/// A join code no one guesses: `XXXX-XXXX-XXXX` from letters and digits that are not easily
/// confused (no 0/O, 1/I/L), as migrations/0001's `^[A-Z0-9-]{6,32}$` allows.
pub fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let random: [u8; 12] = rand::random();
    random
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Registers the school and its first admin, whose password is `password_hash` (argon2id PHC);
/// all or nothing.
pub async fn register(
    client: &mut Object,
    school: &NewSchool,
    password_hash: &str,
) -> Result<Registered, SchoolError> {
    let email = users::normalize_email(&school.admin_email)
        .map_err(|e| SchoolError::Invalid(format!("--admin-email: {}", e.message())))?;
    for (what, value) in [("--name", &school.name), ("--city", &school.city)] {
        if value.trim().is_empty() {
            return Err(SchoolError::Invalid(format!("{what} must not be empty")));
        }
    }
    let tx = client.transaction().await.map_err(db)?;
    let has_schema: bool = tx
        .query_one(
            "select to_regclass('public.schools') is not null \
                and to_regclass('public.school_codes') is not null",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if !has_schema {
        return Err(SchoolError::NoSchema);
    }
    users::check_assignable_role(&tx, "school_admin")
        .await
        .map_err(auth)?;
    let school_id: Uuid = tx
        .query_one(
            "insert into public.schools (name, city, grade_min, grade_max) \
             values (btrim($1), btrim($2), coalesce($3::smallint, 1), coalesce($4::smallint, 5)) \
             returning id",
            &[
                &school.name,
                &school.city,
                &school.grade_min,
                &school.grade_max,
            ],
        )
        .await
        .map_err(db)?
        .get(0);
    let meta = json!({"name": school.admin_name.trim(), "school_id": school_id});
    let admin_id = users::insert(
        &tx,
        &NewUser {
            encrypted_password: Some(password_hash),
            confirmed: true,
            role: "school_admin",
            ..NewUser::authenticated(Some(&email), &meta)
        },
    )
    .await
    .map_err(auth)?
    .ok_or_else(|| SchoolError::EmailTaken(email.clone()))?;
    crate::auth::audit::record(
        &tx,
        std::net::Ipv4Addr::LOCALHOST.into(),
        crate::auth::audit::Action::UserSignedUp,
        admin_id,
        json!({"provider": "email", "by": "doska school create"}),
    )
    .await
    .map_err(auth)?;
    // The sign-up trigger put the admin in the school's staff; check rather than trust it.
    let staff: bool = tx
        .query_one(
            "select exists (select 1 from public.teacher_profiles \
               where user_id = $1 and school_id = $2)",
            &[&admin_id, &school_id],
        )
        .await
        .map_err(db)?
        .get(0);
    if !staff {
        return Err(SchoolError::Db(
            "the sign-up trigger made no teacher profile for the admin \
             (is migrations/0003_teacheruchit_signup.sql applied?)"
                .into(),
        ));
    }
    tx.execute(
        "update public.schools set admin_id = $1 where id = $2",
        &[&admin_id, &school_id],
    )
    .await
    .map_err(db)?;
    let code: String = tx
        .query_one(
            "insert into public.school_codes (code, school_id, created_by) values ($1, $2, $3) \
             returning code",
            &[&new_code(), &school_id, &admin_id],
        )
        .await
        .map_err(db)?
        .get(0);
    tx.commit().await.map_err(db)?;
    Ok(Registered {
        school_id,
        admin_id,
        admin_email: email,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_fit_the_schema() {
        let re = regex::Regex::new("^[A-Z0-9-]{6,32}$").unwrap();
        for _ in 0..200 {
            let c = new_code();
            assert!(re.is_match(&c), "{c}");
            assert_eq!(c.len(), 14);
            assert!(!c.contains(['0', 'O', '1', 'I', 'L']), "{c}");
        }
    }
}
