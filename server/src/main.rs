//! The `doska` binary: everything lives in the library; see `commands`.

/// mimalloc rather than glibc's malloc: the request path allocates many small short-lived buffers,
/// and glibc spent a measurable share of REST's CPU in `_int_free`/`malloc_consolidate`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    open_files_up_to_the_hard_limit();
    doska::commands::main()
}

/// mimalloc asks for transparent huge pages on its arenas; when it hands freed memory back and
/// later reuses it, each fault zeroes a whole 2 MiB page (`clear_page_erms` took ~14 % of doska's
/// CPU while streaming changes). Without them a fault zeroes only the 4 KiB touched. Inherited
/// by the embedded PostgreSQL, whose shared memory is not affected (it uses `huge_pages`).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only changes this process's flags.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Every socket is a file: a soft limit of 1,024 (systemd's default) would stop doska near 1,000
/// clients. The hard limit is what the operator allows; take all of it.
fn open_files_up_to_the_hard_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the plain struct given; only this process's
    // (and its children's) limits change.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
