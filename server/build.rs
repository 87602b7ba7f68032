//! Embeds the SDK (`client-js/src`, every file under it) into the binary, so each doska serves at
//! `/sdk/` the @doska/client that matches it, from the repository exactly as checked out (no build
//! step). Generates `$OUT_DIR/sdk_files.rs`: `SDK_FILES: &[(&str, &[u8])]`, paths relative to
//! `client-js/src` with `/` separators, sorted. A missing folder embeds nothing. Skips dotfiles and
//! anything that is not a regular file or folder (symlinks too: what is served is what is in src).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = format!("{rel}{name}");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{path}/"), out);
        } else if kind.is_file() {
            out.push((path, entry.path()));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let src = manifest.join("..").join("client-js").join("src");
    // A folder: cargo rescans everything under it, so added, changed and removed files all count.
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=build.rs");
    let mut files = Vec::new();
    walk(&src, "", &mut files);
    files.sort();
    let mut code =
        String::from("/// The SDK's files, embedded from client-js/src at build time.\n");
    code.push_str("pub static SDK_FILES: &[(&str, &[u8])] = &[\n");
    for (rel, path) in &files {
        let abs = path.canonicalize().unwrap_or_else(|_| path.clone());
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("sdk_files.rs");
    std::fs::write(out, code).expect("writing sdk_files.rs into OUT_DIR");
}
