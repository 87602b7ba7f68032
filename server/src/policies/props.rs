//! Property tests of the policy language: policy files assembled from the language's own lines
//! (roles, grants with column lists, policies, storage buckets and rules, realtime channels),
//! with wrong values mixed in, are either declarations the compiler turns into a plan, or
//! diagnostics that each name the file and a line inside it — never a panic. Storage and
//! realtime patterns and a rule's `when` are parsed and compiled to SQL without panicking.

use proptest::prelude::*;

use super::compile::compile;
use super::parse::{ParseError, Sources, parse};
use super::pattern::{Pattern, substitute};

/// Lines of a policy file: headers, keys with good and bad values.
const LINES: &[&str] = &[
    "[roles.teacher]",
    "[roles.\"bad name\"]",
    "[roles.student]",
    "comment = \"teaches\"",
    "member_of = [\"authenticated\"]",
    "member_of = \"authenticated\"",
    "[tables.grades]",
    "[tables.\"public.notes\"]",
    "[tables.\"a.b.c\"]",
    "rls = true",
    "rls = \"yes\"",
    "grants.teacher = [\"select\", \"update(grade, comment)\"]",
    "grants.anon = [\"select\"]",
    "grants.anon = [\"update(\"]",
    "grants.student = [\"delete(a)\", \"frobnicate\"]",
    "grants.\"\" = []",
    "[[tables.grades.policies]]",
    "[[tables.notes.policies]]",
    "name = \"teachers grade\"",
    "name = \"\"",
    "for = \"update\"",
    "for = \"everything\"",
    "to = [\"teacher\"]",
    "to = [\"\"]",
    "using = \"teacher_id = auth.uid()\"",
    "with_check = \"grade between 1 and 5\"",
    "using = 5",
    "[storage.buckets.materials]",
    "[storage.buckets.\"Bad Bucket!\"]",
    "public = true",
    "file_size_limit = \"10MB\"",
    "file_size_limit = \"99999999999999999999G\"",
    "file_size_limit = -1",
    "file_size_limit = 5242880",
    "allowed_mime_types = [\"image/*\", \"application/pdf\"]",
    "allowed_mime_types = [\"not a mime\"]",
    "[[storage.buckets.materials.rules]]",
    "allow = [\"read\", \"write\"]",
    "allow = [\"fly\"]",
    "path = \"{auth.uid}/**\"",
    "path = \"{school:uuid}/*\"",
    "path = \"**/x\"",
    "path = \"\"",
    "path = \"{a}/{a}\"",
    "when = \"{school} in (select 1)\"",
    "when = \"{nope} = 1\"",
    "[realtime]",
    "tables = [\"grades\", \"public.notes\"]",
    "tables = [\"\"]",
    "[[realtime.channels]]",
    "topic = \"school:{school:uuid}\"",
    "topic = \"room:*\"",
    "topic = \"{jwt.app_metadata.school}:**\"",
    "topic = \"{jwt.}\"",
    "[unknown]",
    "x = 1",
    "= broken",
    "[tables.grades",
    "\"",
    "",
    "# a comment",
];

fn file() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LINES), 0..24).prop_map(|l| l.join("\n"))
}

const PATTERN_TOKENS: &[&str] = &[
    "/",
    ":",
    "*",
    "**",
    "{",
    "}",
    "{auth.uid}",
    "{jwt.a.b}",
    "{jwt.}",
    "{school}",
    "{school:uuid}",
    "{n:int}",
    "{x:float}",
    "{A}",
    "{a.b}",
    "a",
    "b",
    ".",
    "-",
    "'",
    "\\",
    "é",
    " ",
];

fn pattern_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PATTERN_TOKENS), 0..10).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(crate::props::budget(256))]

    #[test]
    fn policy_files_compile_or_point_at_a_line(files in prop::collection::vec(file(), 1..3)) {
        let sources = Sources::from_files(
            files.iter().enumerate().map(|(i, t)| (format!("p/{i}.toml"), t.clone())).collect(),
        );
        match parse(&sources) {
            Ok(decls) => {
                let _ = compile(&decls);
            }
            Err(ParseError::Invalid(diags)) => {
                prop_assert!(!diags.is_empty());
                for d in &diags {
                    let i: usize = d.loc.file["p/".len()..d.loc.file.len() - ".toml".len()]
                        .parse()
                        .expect("a file of the set");
                    let lines = files[i].lines().count().max(1);
                    prop_assert!(
                        (1..=lines + 1).contains(&d.loc.line),
                        "{} (the file has {} lines)", d, lines
                    );
                    prop_assert!(!d.message.is_empty());
                }
            }
            Err(other) => prop_assert!(false, "only diagnostics from text: {other}"),
        }
    }

    #[test]
    fn patterns_compile_or_are_refused(text in pattern_text(), when in pattern_text()) {
        for sep in ['/', ':'] {
            if let Ok(p) = Pattern::parse(&text, sep) {
                let (sql, captures) = p.sql("name");
                prop_assert!(!sql.is_empty());
                let _ = substitute(&when, &captures);
            }
        }
    }
}
