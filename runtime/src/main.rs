//! The `weir` binary: parse the command line, run it, turn errors into a
//! message and an exit code. The work is in the library.

#[global_allocator]
static ALLOCATOR: weir::Allocator = weir::ALLOCATOR;

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
