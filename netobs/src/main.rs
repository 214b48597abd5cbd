use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = netobs::cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp(None)
        .init();
    match netobs::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netobs: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
