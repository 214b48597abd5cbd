//! `netobs read FILE`: wiring only; the work is in [`crate::capture`].
//! Exit 0 read to its end (and, with `--kernel`, the datapath agreed), 1
//! cut short, damaged or a disagreement (see [`crate::exit`]).

use std::{
    io::{IsTerminal as _, Read},
    path::Path,
    process::ExitCode,
    sync::atomic::Ordering,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::{
    capture::{self, End, Options, Replay, kernel::KernelCheck, pcap::Capture, pcap::CaptureError},
    cli::{Color, ReadArgs},
    exit,
    output::sink::{self, Sink},
};

/// Files above this size get a progress bar on a terminal.
const PROGRESS_ABOVE: u64 = 32 << 20;

pub fn run(args: ReadArgs) -> Result<ExitCode> {
    let stdin = args.file == Path::new("-");
    let (input, label, size): (Box<dyn Read>, String, Option<u64>) = if stdin {
        (Box::new(std::io::stdin()), "stdin".into(), None)
    } else {
        let f = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))
            .map_err(exit::usage)?;
        let size = f.metadata().ok().map(|m| m.len());
        let label =
            args.file.file_name().map_or_else(|| args.file.display().to_string(), |n| n.to_string_lossy().into());
        (Box::new(f), label, size)
    };
    let mut capture = Capture::open(input).map_err(|e| {
        let io = matches!(e, CaptureError::Io(_));
        let e = anyhow::Error::new(e).context(format!("reading {label}"));
        if io { e } else { exit::usage(e) }
    })?;
    let kernel = if args.kernel { Some(KernelCheck::new()?) } else { None };
    let mut sink = Sink::new(args.json, sink::color_for_stdout(args.color), None).map_err(exit::usage)?;
    let opts = Options {
        local: args.local.clone(),
        initial_ttl: args.initial_ttl,
        update_interval: Duration::from_secs(u64::from(args.update_interval)),
        max_flows: args.max_flows as usize,
        frames: args.frames,
        label,
        iface: args.iface.clone(),
    };
    let mut replay = Replay::new(opts, kernel);
    let bar = progress_bar(args.progress, size);
    let read = capture.bytes_read.clone();
    let end = capture::run(&mut capture, &mut replay, &mut sink, |_| {
        if let Some(b) = &bar {
            b.set_position(read.load(Ordering::Relaxed));
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let end = end?;
    replay.finish(&mut sink);
    sink.record(&replay.summary_record(&capture, &end));
    sink.text(&replay.summary_text(&capture, &end));
    if !sink.json
        && let Some(note) = replay.live_join_note()
    {
        sink::note(&format!("netobs: note: {note}"));
    }
    if let Some(k) = &replay.kernel
        && !sink.json
    {
        sink::note(&format!(
            "netobs: kernel: {} frames through netobs_xdp, {} agreed, {} disagreed, {} too long for one XDP buffer, {} sampled out",
            k.run, k.agreed, k.disagreed, k.not_run, k.sampled_out
        ));
    }
    let disagreed = replay.kernel.as_ref().is_some_and(|k| k.disagreed > 0);
    Ok(ExitCode::from(if end == End::Complete && !disagreed { exit::OK } else { exit::NEGATIVE }))
}

/// A bar on stderr for a large file, when stderr is a terminal (or asked for).
fn progress_bar(choice: Color, size: Option<u64>) -> Option<indicatif::ProgressBar> {
    let size = size?;
    let show = match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => size > PROGRESS_ABOVE && std::io::stderr().is_terminal(),
    };
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(size), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    Some(bar)
}
