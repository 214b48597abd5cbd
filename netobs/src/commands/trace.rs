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
        hopmtu, multipath,
        packet::Proto,
        pmtu::PmtuOptions,
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
    if let Some(n) = args.flows {
        return multipath_run(&rt, &args, target, port, n);
    }
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
            tos: args.tos,
            ..TraceOptions::default()
        };
        let progress = Progress::new(!args.json);
        let r =
            trace::run(&mut prober, &opts, |a, s| progress.show(&format!("trace {target}: {a}/{s} answered"))).await;
        progress.clear();
        let mut r = r?;
        if args.mtu {
            let (_, local_mtu) = probe::egress(target)?;
            let popts = PmtuOptions {
                max_wait: args.wait,
                initial_ttl: opts.initial_ttl,
                locate: false,
                ..PmtuOptions::default()
            };
            // Hops that answered the trace: a silent one cannot show a size.
            let ttls: Vec<u8> = r.hops.iter().filter(|h| h.answered > 0).map(|h| h.ttl).collect();
            r.mtu = Some(hopmtu::run(&mut prober, &ttls, local_mtu, &popts, args.queries).await?);
        }
        anyhow::Ok(r)
    })?;
    let text = if args.json { format!("{}\n", probe::json_doc("trace", &result)?) } else { trace::render(&result) };
    let _ = sink::stdout(&text);
    Ok(Outcome::trace(&result).code())
}

/// `trace --flows N`: N Paris traces at once ([`multipath`]); exit 0 when
/// any flow reached the destination.
fn multipath_run(
    rt: &tokio::runtime::Runtime,
    args: &TraceArgs,
    target: std::net::IpAddr,
    port: u16,
    n: u8,
) -> Result<ExitCode> {
    // The same knobs as the single trace above.
    let opts = TraceOptions {
        max_ttl: args.max_ttl,
        queries: args.queries,
        burst: args.burst,
        gap: args.gap,
        max_wait: args.wait,
        initial_ttl: net::initial_ttl(if target.is_ipv4() { 4 } else { 6 }),
        tos: args.tos,
        ..TraceOptions::default()
    };
    let progress = Progress::new(!args.json);
    let result = rt.block_on(multipath::run(target, args.proto, port, n, &opts, |s| {
        progress.show(&format!("trace {target}: {n} flows, {s} probes sent"))
    }));
    progress.clear();
    let result = result?;
    let text =
        if args.json { format!("{}\n", probe::json_doc("multipath", &result)?) } else { multipath::render(&result) };
    let _ = sink::stdout(&text);
    Ok(if result.reached_by > 0 { Outcome::Ok } else { Outcome::Negative }.code())
}
