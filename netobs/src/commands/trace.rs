//! `netobs trace`: traceroute with a stable flow, all TTLs in flight.
//! Exit 0 reached, 1 not reached (see [`crate::exit`]).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::{
    exit::{self, Outcome},
    net,
    output::sink,
    privilege,
    probe::{
        self, Progress,
        cli::TraceArgs,
        packet::Proto,
        socket::Prober,
        trace::{self, TraceOptions},
    },
};

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    let target = probe::resolve(&args.host, args.family.family()).map_err(exit::usage)?;
    let port = args.port.unwrap_or(if args.proto == Proto::Tcp { 80 } else { 33434 });
    privilege::check("trace", &privilege::needs(false, true))?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let result = rt.block_on(async {
        let mut prober = Prober::open(target, args.proto, port, 0)?;
        privilege::drop_to_or_warn(&[]);
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
    let text = if args.json { format!("{}\n", probe::json_doc("trace", &result)?) } else { trace::render(&result) };
    let _ = sink::stdout(&text);
    Ok(Outcome::trace(&result).code())
}
