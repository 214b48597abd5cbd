//! `netobs tcp HOST:PORT` (or `HOST --port PORT`): handshake check. Exit 0
//! open, 1 closed, rejected or silent (see [`crate::exit`]).

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

use crate::{
    exit::{self, Outcome},
    net,
    output::sink,
    privilege,
    probe::{self, cli::TcpArgs, names, packet::Proto, socket::Prober, tcp},
};

/// HOST and PORT from `HOST:PORT` and/or `--port`: exactly one port.
fn target(args: &TcpArgs) -> Result<(String, u16)> {
    match (probe::parse_host_port(&args.target), args.port) {
        (Ok((_, p)), Some(q)) if p != q => bail!("{:?} names port {p} but --port says {q}", args.target),
        (Ok(hp), _) => Ok(hp),
        (Err(_), Some(port)) => Ok((args.target.clone(), port)),
        (Err(e), None) => Err(e.context("give the port as HOST:PORT or with --port")),
    }
}

pub fn run(args: TcpArgs) -> Result<ExitCode> {
    let (host, port) = target(&args).map_err(exit::usage)?;
    let target = names::resolve_target(&host, args.family.family()).map_err(exit::usage)?;
    privilege::check("tcp", &privilege::needs(false, true))?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut prober = Prober::open(target, Proto::Tcp, port, 0)?;
        // The raw sockets are open: nothing else needs a capability.
        privilege::drop_to_or_warn(&[]);
        tcp::run(&mut prober, args.attempts, args.wait, net::initial_ttl(if target.is_ipv4() { 4 } else { 6 })).await
    })?;
    let text = if args.json { format!("{}\n", probe::json_doc("tcp", &result)?) } else { tcp::render(&result) };
    // A closed stdout loses nothing the exit status does not say.
    let _ = sink::stdout(&text);
    Ok(Outcome::tcp(&result).code())
}
