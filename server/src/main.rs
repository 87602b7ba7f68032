//! The `doska` binary: everything lives in the library; see `commands`.

/// mimalloc rather than glibc's malloc: the request path allocates many small short-lived buffers,
/// and glibc spent a measurable share of REST's CPU in `_int_free`/`malloc_consolidate`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    doska::commands::main()
}
