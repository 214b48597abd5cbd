//! The progress line of the probes that can take more than a second
//! (`explain`, `pmtu`, `trace --report`): an indicatif spinner on stderr,
//! drawn only when stderr is a terminal (nothing at all when piped or
//! with `--json`), and only once the run has lasted a second, so a quick
//! trace leaves no flicker behind.

use std::{
    cell::Cell,
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Nothing is drawn before this: a probe that ends sooner needs no line.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A one-line progress indicator on stderr, only when it is a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    visible: Cell<bool>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, started: Instant::now(), visible: Cell::new(false) }
    }

    /// Updates the message (indicatif limits redraws itself).
    pub fn show(&self, msg: &str) {
        let Some(bar) = &self.bar else { return };
        if !self.visible.get() && self.started.elapsed() >= SHOW_AFTER {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            self.visible.set(true);
        }
        bar.set_message(msg.to_string());
        bar.tick();
    }

    /// Removes the line (before the result is printed).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
