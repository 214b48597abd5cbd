//! `netobs trace`: traceroute with a stable flow, all TTLs in flight, hop
//! names by reverse DNS; `--report` / `--live` for mtr-style statistics,
//! `--flows N` for multipath, `--mtu` for the per-hop MTU.
//! Exit 0 reached, 1 not reached (see [`crate::exit`]).

use std::{io::IsTerminal as _, process::ExitCode};

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
        names::{self, Names},
        packet::Proto,
        pmtu::PmtuOptions,
        report::{self, ReportOptions},
        socket::{self, Bind, Prober},
        trace::{self, TraceOptions},
    },
};

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    let target = names::resolve_target(&args.host, args.family.family()).map_err(exit::usage)?;
    let proto = args.protocol();
    let port = args.port.unwrap_or(if proto == Proto::Tcp { 80 } else { 33434 });
    if args.first_ttl > args.max_ttl {
        return Err(exit::usage(anyhow::anyhow!(
            "first TTL {} is above the highest TTL {} (-f, -m)",
            args.first_ttl,
            args.max_ttl
        )));
    }
    if args.count.is_some() && !args.report && !args.live {
        return Err(exit::usage(anyhow::anyhow!("-c/--count is the number of --report or --live cycles")));
    }
    privilege::check("trace", &privilege::needs(false, true))?;
    let bind = Bind { source: args.source, iface: args.interface.clone() };
    // A source that is not ours or an unknown interface: could not ask (2).
    socket::source_with(target, &bind).map_err(exit::usage)?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let opts = TraceOptions {
        first_ttl: args.first_ttl,
        max_ttl: args.max_ttl,
        queries: args.queries,
        burst: args.burst,
        gap: args.gap,
        max_wait: args.wait,
        initial_ttl: net::initial_ttl(if target.is_ipv4() { 4 } else { 6 }),
        send_wait: args.sendwait,
        tos: args.tos,
        ..TraceOptions::default()
    };
    if args.report || args.live {
        return rt.block_on(report(&args, target, proto, port, &bind, opts));
    }
    if let Some(n) = args.flows {
        return multipath_run(&rt, &args, target, proto, port, n, &opts);
    }
    let result = rt.block_on(async {
        let mut prober = Prober::open_with(target, proto, port, 0, &bind)?;
        privilege::drop_to_or_warn(&[]);
        let mut names = Names::new(!args.numeric);
        let progress = Progress::new(!args.json);
        let r =
            trace::run(&mut prober, &opts, |a, s| progress.show(&format!("trace {target}: {a}/{s} answered"))).await;
        progress.clear();
        let mut r = r?;
        // Names resolve while the per-hop MTU probes run.
        names.start_trace(&r);
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
        names.resolve_trace(&mut r, args.dns_wait).await;
        anyhow::Ok(r)
    })?;
    let text = if args.json { format!("{}\n", probe::json_doc("trace", &result)?) } else { trace::render(&result) };
    let _ = sink::stdout(&text);
    Ok(Outcome::trace(&result).code())
}

/// `--report` / `--live`.
async fn report(
    args: &TraceArgs,
    target: std::net::IpAddr,
    proto: Proto,
    port: u16,
    bind: &Bind,
    opts: TraceOptions,
) -> Result<ExitCode> {
    let mut prober = Prober::open_with(target, proto, port, 0, bind)?;
    privilege::drop_to_or_warn(&[]);
    let mut names = Names::new(!args.numeric);
    let ropts = ReportOptions { cycles: args.cycles(), interval: args.interval, trace: opts };
    let live = args.live && std::io::stdout().is_terminal();
    let progress = Progress::new(!args.json && !live);
    let total = ropts.cycles.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
    let r = report::run(&mut prober, &ropts, &mut names, args.dns_wait, |r| {
        if live {
            report::redraw(r, true);
        } else {
            progress.show(&format!("report {target}: cycle {}/{total}, {} probes", r.cycles, r.probes_sent));
        }
    })
    .await;
    progress.clear();
    let Some(r) = r? else {
        // Ctrl-C before the first cycle ended: nothing to report.
        return Ok(ExitCode::from(exit::NEGATIVE));
    };
    if live {
        // The final table (names settled) in place of the last one drawn.
        report::redraw(&r, false);
    } else {
        let text =
            if args.json { format!("{}\n", probe::json_doc("report", &r)?) } else { report::render(&r, Some(&names)) };
        let _ = sink::stdout(&text);
    }
    // As for a trace: 0 the destination answered, 1 it did not.
    Ok(ExitCode::from(if r.reached_at.is_some() { exit::OK } else { exit::NEGATIVE }))
}

/// `trace --flows N`: N Paris traces at once ([`multipath`]); exit 0 when
/// any flow reached the destination.
fn multipath_run(
    rt: &tokio::runtime::Runtime,
    args: &TraceArgs,
    target: std::net::IpAddr,
    proto: Proto,
    port: u16,
    n: u8,
    opts: &TraceOptions,
) -> Result<ExitCode> {
    let progress = Progress::new(!args.json);
    let result = rt.block_on(multipath::run(target, proto, port, n, opts, |s| {
        progress.show(&format!("trace {target}: {n} flows, {s} probes sent"))
    }));
    progress.clear();
    let result = result?;
    let text =
        if args.json { format!("{}\n", probe::json_doc("multipath", &result)?) } else { multipath::render(&result) };
    let _ = sink::stdout(&text);
    Ok(if result.reached_by > 0 { Outcome::Ok } else { Outcome::Negative }.code())
}
