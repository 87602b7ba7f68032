//! The shape of the house, checked: reads every file under `src/`, follows the module tree from
//! `lib.rs` (`mod x;`, `#[path]`), collects the `crate::…`, `super::…` and `self::…` paths each file
//! names (in `use` lines and in code), resolves them to the file that defines the module, and fails on
//! an import loop between files, a door importing another door, or a lower layer (`config`, `db`,
//! `http`, `jwt`, `pg`, `state`, `secret`, the policy compiler) importing a door or the entry layer,
//! and a file over 900 lines. docs/architecture.md explains the rules.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The front doors: each owns its state and imports no other door.
const DOORS: &[&str] = &["rest", "auth", "realtime", "storage"];
/// The entry layer: may import anything. `testing` (`doska policies test`) and `schools` (`doska
/// school create`) are commands that drive the doors as their clients.
const ENTRY: &[&str] = &["main", "commands", "startup", "testing", "schools"];
/// Longest file allowed, counting its inline test module.
const MAX_LINES: usize = 900;

/// One source file: its module path (`["rest", "plan"]`) and the text without comments or literals.
struct File {
    path: PathBuf,
    module: Vec<String>,
    /// A `#[cfg(test)]` module in its own file: test code, not part of the house's structure.
    test: bool,
    tokens: Vec<Tok>,
    lines: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(char),
    /// `::`
    Path,
    /// A string literal's contents (kept for `#[path = "…"]`).
    Str(String),
}

/// Splits Rust source into identifiers and punctuation, dropping comments, char literals and
/// lifetimes; string literals are kept whole.
fn lex(src: &str) -> Vec<Tok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b')
            && (b.get(i + 1) == Some(&'#')
                || (b.get(i + 1) == Some(&'"') && c == 'r')
                || (c == 'b' && b.get(i + 1) == Some(&'r')))
            && !prev_is_ident(&b, i)
        {
            // Raw strings: r"…", r#"…"#, br#"…"#.
            let mut j = i + 1;
            if b.get(j) == Some(&'r') {
                j += 1;
            }
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(Tok::Ident(c.to_string()));
                i += 1;
                continue;
            }
            j += 1;
            let start = j;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            out.push(Tok::Str(b[start..j.min(b.len())].iter().collect()));
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                if let Some(&ch) = b.get(j) {
                    s.push(ch);
                }
                j += 1;
            }
            out.push(Tok::Str(s));
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            if b.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(b[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                if b[i] == '.' && b.get(i + 1) == Some(&'.') {
                    break;
                }
                i += 1;
            }
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok::Path);
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Whether the `mod` at `k` carries `#[cfg(test)]` (among its attributes, before `pub` if any).
fn cfg_test_before(t: &[Tok], k: usize) -> bool {
    let mut i = k;
    // Skip `pub`, `pub(crate)`, `pub(super)`.
    while i > 0 {
        match &t[i - 1] {
            Tok::Ident(s) if s == "pub" || s == "crate" || s == "super" => i -= 1,
            Tok::Punct('(') | Tok::Punct(')') => i -= 1,
            _ => break,
        }
    }
    // Walk back over attributes `#[ … ]`, looking for `cfg(test)`.
    while i > 0 && t[i - 1] == Tok::Punct(']') {
        let end = i - 1;
        let mut j = end;
        while j > 0 && t[j] != Tok::Punct('#') {
            j -= 1;
        }
        let attr = &t[j..end];
        let words: Vec<&str> = attr
            .iter()
            .filter_map(|x| match x {
                Tok::Ident(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if words == ["cfg", "test"] {
            return true;
        }
        i = j;
    }
    false
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Reads the module tree from `lib.rs` and `main.rs`.
fn load(src: &Path) -> Vec<File> {
    let mut files = Vec::new();
    let mut todo = vec![
        (src.join("lib.rs"), Vec::<String>::new(), false),
        (src.join("main.rs"), vec!["main".to_string()], false),
    ];
    while let Some((path, module, test)) = todo.pop() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let tokens = lex(&text);
        // Where this file's child modules live: `a/b.rs` and `a/b/mod.rs` keep them in `a/b/`.
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let dir = if matches!(stem, "lib" | "main" | "mod") {
            path.parent().unwrap().to_path_buf()
        } else {
            path.parent().unwrap().join(stem)
        };
        let mut k = 0;
        while k + 2 < tokens.len() {
            if let (Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')) =
                (&tokens[k], &tokens[k + 1], &tokens[k + 2])
                && m == "mod"
            {
                let explicit = (k >= 3)
                    .then(|| match (&tokens[k - 3], &tokens[k - 2], &tokens[k - 1]) {
                        (Tok::Punct('='), Tok::Str(p), Tok::Punct(']')) => Some(p.clone()),
                        _ => None,
                    })
                    .flatten();
                let child = match explicit {
                    Some(p) => path.parent().unwrap().join(p),
                    None if dir.join(format!("{name}.rs")).exists() => {
                        dir.join(format!("{name}.rs"))
                    }
                    None => dir.join(name).join("mod.rs"),
                };
                let mut m = module.clone();
                m.push(name.clone());
                todo.push((child, m, test || cfg_test_before(&tokens, k)));
            }
            k += 1;
        }
        files.push(File {
            path,
            module,
            test,
            tokens,
            lines: text.lines().count(),
        });
    }
    files
}

/// Every module path a file names through `crate::`, `super::` or `self::`, in `use` trees and in
/// code, made absolute.
fn named_paths(file: &File) -> Vec<Vec<String>> {
    let t = &file.tokens;
    let mut out = Vec::new();
    if file.test {
        return out;
    }
    // Inline modules (`mod tests { … }`) shift what `super` and `self` mean.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut k = 0;
    while k < t.len() {
        match &t[k] {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(m)
                if m == "mod"
                    && matches!(t.get(k + 2), Some(Tok::Punct('{')))
                    && cfg_test_before(t, k) =>
            {
                // Inline test modules are the house's clients, not part of its structure.
                let mut open = 0;
                k += 2;
                while k < t.len() {
                    match t[k] {
                        Tok::Punct('{') => open += 1,
                        Tok::Punct('}') => {
                            open -= 1;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    k += 1;
                }
            }
            Tok::Ident(m)
                if m == "mod"
                    && matches!(t.get(k + 2), Some(Tok::Punct('{')))
                    && matches!(t.get(k + 1), Some(Tok::Ident(_))) =>
            {
                if let Some(Tok::Ident(name)) = t.get(k + 1) {
                    inline.push((name.clone(), depth));
                }
            }
            Tok::Ident(root)
                if matches!(root.as_str(), "crate" | "super" | "self")
                    && t.get(k + 1) == Some(&Tok::Path)
                    && !(k > 0 && t[k - 1] == Tok::Path) =>
            {
                let mut here = file.module.clone();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut base = match root.as_str() {
                    "crate" => Vec::new(),
                    "self" => here,
                    _ => {
                        here.pop();
                        here
                    }
                };
                k += 2;
                // Further `super::super::…`.
                while matches!(t.get(k), Some(Tok::Ident(s)) if s == "super")
                    && t.get(k + 1) == Some(&Tok::Path)
                {
                    base.pop();
                    k += 2;
                }
                k = use_tree(t, k, base, &mut out);
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// Reads a path or a `{…}` group starting at `k` under `base`; returns where it stopped.
fn use_tree(t: &[Tok], mut k: usize, mut base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        match t.get(k) {
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    base.push(s.clone());
                }
                k += 1;
                if t.get(k) == Some(&Tok::Path) {
                    k += 1;
                } else {
                    out.push(base);
                    return k;
                }
            }
            Some(Tok::Punct('{')) => {
                k += 1;
                loop {
                    match t.get(k) {
                        Some(Tok::Punct('}')) => return k + 1,
                        Some(Tok::Punct(',')) => k += 1,
                        None => return k,
                        _ => {
                            let before = k;
                            k = use_tree(t, k, base.clone(), out);
                            // Skip `as name` and anything else up to the next item.
                            while !matches!(t.get(k), Some(Tok::Punct(',' | '}')) | None) {
                                k += 1;
                            }
                            if k == before {
                                k += 1;
                            }
                        }
                    }
                }
            }
            _ => {
                out.push(base);
                return k;
            }
        }
    }
}

/// The file that defines the longest prefix of `path`.
fn resolve<'a>(files: &'a [File], path: &[String]) -> Option<&'a File> {
    (0..=path.len())
        .rev()
        .find_map(|n| files.iter().find(|f| f.module == path[..n]))
}

fn top(f: &File) -> &str {
    f.module.first().map(String::as_str).unwrap_or("lib")
}

fn name(f: &File) -> String {
    f.path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(&f.path)
        .display()
        .to_string()
}

/// The files each file imports (by index), without itself.
fn graph(files: &[File]) -> Vec<BTreeSet<usize>> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            named_paths(f)
                .iter()
                .filter_map(|p| resolve(files, p))
                .map(|g| files.iter().position(|x| std::ptr::eq(x, g)).unwrap())
                .filter(|&j| j != i)
                .collect()
        })
        .collect()
}

/// Strongly connected components with more than one file (Tarjan).
fn loops(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct T<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in t.edges[v].clone().iter() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let n = edges.len();
    let mut t = T {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

fn house() -> (Vec<File>, Vec<BTreeSet<usize>>) {
    let files = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let edges = graph(&files);
    (files, edges)
}

#[test]
fn no_import_loop_between_files() {
    let (files, edges) = house();
    let found: Vec<String> = loops(&edges)
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(|&i| name(&files[i])).collect();
            names.sort();
            names.join(" ↔ ")
        })
        .collect();
    assert!(found.is_empty(), "import loops:\n{}", found.join("\n"));
}

#[test]
fn imports_run_one_way() {
    let (files, edges) = house();
    let mut wrong = BTreeMap::<String, BTreeSet<String>>::new();
    for (i, to) in edges.iter().enumerate() {
        let from = top(&files[i]);
        for &j in to {
            let target = top(&files[j]);
            let bad = if ENTRY.contains(&from) || from == "lib" {
                false
            } else if ENTRY.contains(&target) {
                // Nothing below the entry reaches back up to it.
                true
            } else if DOORS.contains(&from) {
                DOORS.contains(&target) && target != from
            } else {
                // config, db, http, jwt, pg, state, secret and the policy compiler: no door.
                DOORS.contains(&target) || (from == "pg" && target != "pg")
            };
            if bad {
                wrong
                    .entry(name(&files[i]))
                    .or_default()
                    .insert(name(&files[j]));
            }
        }
    }
    let lines: Vec<String> = wrong
        .iter()
        .map(|(f, t)| format!("{f} → {}", t.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect();
    assert!(
        lines.is_empty(),
        "imports that run the wrong way:\n{}",
        lines.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_should() {
    // A sanity check on the reader itself, so the tests above cannot pass by seeing nothing.
    let (files, edges) = house();
    let find = |m: &str| {
        files
            .iter()
            .position(|f| f.module.join("::") == m)
            .unwrap_or_else(|| panic!("module {m} not found"))
    };
    assert!(files.len() > 50, "only {} files read", files.len());
    let startup = find("startup");
    assert!(edges[startup].contains(&find("config")));
    let t = lex("use crate::{a::{b, c as d}, e}; let x = '}'; /* crate::z */ r#\"crate::y\"#;");
    let f = File {
        path: PathBuf::new(),
        module: vec!["m".into()],
        test: false,
        tokens: t,
        lines: 0,
    };
    let got = named_paths(&f);
    let want: Vec<Vec<String>> = [vec!["a", "b"], vec!["a", "c"], vec!["e"]]
        .iter()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn no_file_over_the_line_limit() {
    // Inline test modules count: a room is the whole file a reader opens.
    let (files, _) = house();
    let big: Vec<String> = files
        .iter()
        .filter(|f| f.lines > MAX_LINES)
        .map(|f| format!("{} ({} lines)", name(f), f.lines))
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_LINES} lines (split them along their seams; move big test modules to \
         their own files):\n{}",
        big.join("\n")
    );
}
