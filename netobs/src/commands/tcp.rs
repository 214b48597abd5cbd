//! `netobs tcp HOST:PORT`: handshake check.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::{
    net,
    probe::{self, cli::TcpArgs, packet::Proto, socket::Prober, tcp},
};

pub fn run(args: TcpArgs) -> Result<ExitCode> {
    let (host, port) = probe::parse_host_port(&args.target)?;
    let target = probe::resolve(&host, None)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut prober = Prober::open(target, Proto::Tcp, port, 0)?;
        tcp::run(&mut prober, args.attempts, args.wait, net::initial_ttl(if target.is_ipv4() { 4 } else { 6 })).await
    })?;
    if args.json {
        println!("{}", probe::json_doc("tcp", &result)?);
    } else {
        print!("{}", tcp::render(&result));
    }
    Ok(ExitCode::SUCCESS)
}
