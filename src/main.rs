use clap::Parser;

fn main() {
    let cli = cryofield::cli::Cli::parse();
    if let Err(e) = cryofield::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
