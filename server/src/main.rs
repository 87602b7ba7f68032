//! The `doska` binary: everything lives in the library; see `commands`.

fn main() -> std::process::ExitCode {
    doska::commands::main()
}
