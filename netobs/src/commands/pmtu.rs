//! `netobs pmtu`: path-MTU search with blackhole detection. Exit 0 path
//! MTU found, 1 blackhole (see [`crate::exit`]).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::{
    exit::{self, Outcome},
    net,
    output::sink,
    privilege,
    probe::{
        self, Progress,
        cli::PmtuArgs,
        packet::Proto,
        pmtu::{self, PmtuOptions},
        socket::Prober,
    },
};

pub fn run(args: PmtuArgs) -> Result<ExitCode> {
    let target = probe::names::resolve_target(&args.host, args.family.family()).map_err(exit::usage)?;
    let port = args.port.unwrap_or(if args.proto == Proto::Tcp { 80 } else { 33434 });
    privilege::check("pmtu", &privilege::needs(false, true))?;
    let (_iface, local_mtu) = probe::egress(target).map_err(exit::usage)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut prober = Prober::open(target, args.proto, port, 0)?;
        privilege::drop_to_or_warn(&[]);
        let opts = PmtuOptions {
            max_wait: args.wait,
            locate: !args.no_locate,
            initial_ttl: net::initial_ttl(if target.is_ipv4() { 4 } else { 6 }),
            ..PmtuOptions::default()
        };
        let progress = Progress::new(!args.json);
        let r =
            pmtu::run(&mut prober, local_mtu, &opts, |s| progress.show(&format!("pmtu {target}: {s} probes"))).await;
        progress.clear();
        r
    })?;
    let text = if args.json { format!("{}\n", probe::json_doc("pmtu", &result)?) } else { pmtu::render(&result) };
    let _ = sink::stdout(&text);
    Ok(Outcome::pmtu(&result).code())
}
