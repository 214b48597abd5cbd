use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = netobs::cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(cli.log_level()))
        .format_timestamp(None)
        .init();
    match netobs::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, outermost first, each once.
            let mut stderr = std::io::stderr().lock();
            let _ =
                std::io::Write::write_fmt(&mut stderr, format_args!("netobs: error: {}\n", netobs::exit::render(&e)));
            std::process::ExitCode::from(netobs::exit::for_error(&e))
        }
    }
}
