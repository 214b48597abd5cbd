//! `netobs explain`: all probes plus the kernel observer, one verdict.
//! Exit 0 reachable with no problem found, 1 a problem found (see
//! [`crate::exit`]).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::{
    exit::{self, Outcome},
    output::sink,
    privilege,
    probe::{
        self,
        cli::ExplainArgs,
        explain::{self, Request},
        packet::Proto,
        verdict,
    },
};

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let target = probe::names::resolve_target(&args.host, args.family.family()).map_err(exit::usage)?;
    let port = args.port.unwrap_or(if args.proto == Proto::Udp { 33434 } else { 80 });
    privilege::check("explain", &privilege::needs(!args.no_kernel, true))?;
    let req = Request {
        target,
        proto: args.proto,
        port,
        max_ttl: args.max_ttl,
        max_wait: args.wait,
        kernel: !args.no_kernel,
        progress: !args.json,
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the tokio runtime")?;
    let report = rt.block_on(explain::run(&req))?;
    let text = if args.json {
        format!("{}\n", probe::json_doc("explain", &report)?)
    } else {
        verdict::render(&report.verdict)
    };
    let _ = sink::stdout(&text);
    Ok(Outcome::explain(&report.verdict).code())
}
