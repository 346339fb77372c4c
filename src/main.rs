use clap::Parser;

fn main() {
    restore_sigpipe();
    let cli = cryofield::cli::Cli::parse();
    if let Err(e) = cryofield::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Let a closed stdout end the process as it ends `cat` or `grep`: killed by SIGPIPE, quietly, with
/// the status a shell shows as 141 (`cryofield info x.mrcs | head`). Rust's runtime ignores SIGPIPE,
/// which turns the next `println!` into a "failed printing to stdout: Broken pipe" panic.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; installing the default
    // disposition for SIGPIPE has no other effect on the process's state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}
