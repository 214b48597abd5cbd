//! `netobs explain`: all probes plus the kernel observer, one verdict.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::probe::{
    self,
    cli::ExplainArgs,
    explain::{self, Request},
    packet::Proto,
    verdict,
};

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let target = probe::resolve(&args.host, args.family.family())?;
    let port = args.port.unwrap_or(if args.proto == Proto::Udp { 33434 } else { 80 });
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
    if args.json {
        println!("{}", probe::json_doc("explain", &report)?);
    } else {
        print!("{}", verdict::render(&report.verdict));
    }
    Ok(ExitCode::SUCCESS)
}
