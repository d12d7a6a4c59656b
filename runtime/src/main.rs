//! The `weir` binary: parse the command line, run it, turn errors into a
//! message and an exit code. The work is in the library.

/// mimalloc: the host allocates and frees several small buffers per event
/// and stage (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
