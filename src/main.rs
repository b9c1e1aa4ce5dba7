use std::process::ExitCode;

// The query engine allocates and frees many short-lived buffers per batch; mimalloc's
// per-thread free lists serve that pattern faster than the system allocator (figures in
// docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    supportlake::cli::main()
}
