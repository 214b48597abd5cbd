//! `netobs trace`: traceroute with a stable flow, all TTLs in flight.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::{
    net,
    probe::{
        self, Progress,
        cli::TraceArgs,
        packet::Proto,
        socket::Prober,
        trace::{self, TraceOptions},
    },
};

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    let target = probe::resolve(&args.host, args.family.family())?;
    let port = args.port.unwrap_or(if args.proto == Proto::Tcp { 80 } else { 33434 });
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut prober = Prober::open(target, args.proto, port, 0)?;
        let opts = TraceOptions {
            max_ttl: args.max_ttl,
            queries: args.queries,
            burst: args.burst,
            gap: args.gap,
            max_wait: args.wait,
            initial_ttl: net::initial_ttl(if target.is_ipv4() { 4 } else { 6 }),
            ..TraceOptions::default()
        };
        let progress = Progress::new(!args.json);
        let r =
            trace::run(&mut prober, &opts, |a, s| progress.show(&format!("trace {target}: {a}/{s} answered"))).await;
        progress.clear();
        r
    })?;
    if args.json {
        println!("{}", probe::json_doc("trace", &result)?);
    } else {
        print!("{}", trace::render(&result));
    }
    Ok(ExitCode::SUCCESS)
}
