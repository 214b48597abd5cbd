//! Exit codes, in one place, so scripts can branch on them
//! (`netobs tcp host:443 || alert`).
//!
//! The convention is ping's and nc's: 0 the thing asked about is fine, 1
//! it is not (closed, rejected, silent, a blackhole, not reached), 2 the
//! question could not be asked (usage error, missing privilege, a host or
//! interface that does not exist). A failure while running (a kernel or
//! socket error) is 3, so a script can tell "the port is closed" (1) from
//! "netobs could not tell" (2, 3). `watch` exits 0 when it stops as asked
//! (signal, `--duration`, its output pipe closed).

use std::process::ExitCode;

use crate::{
    probe::{pmtu::PmtuResult, tcp::TcpResult, tcp::TcpState, trace::TraceResult},
    verdict::Diagnosis,
};

/// The answer is "yes": open, reached, path MTU found, nothing wrong.
pub const OK: u8 = 0;
/// The answer is "no": closed, rejected, silent, not reached, a blackhole,
/// a problem found.
pub const NEGATIVE: u8 = 1;
/// Could not ask: usage error, missing capability, unknown host or
/// interface. clap's own usage errors exit 2 too.
pub const USAGE: u8 = 2;
/// Failed while running (kernel, socket or I/O error).
pub const RUNTIME: u8 = 3;

/// What a command found, as an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Negative,
}

impl Outcome {
    fn from_bool(ok: bool) -> Outcome {
        if ok { Outcome::Ok } else { Outcome::Negative }
    }

    /// `tcp`: 0 open (SYN-ACK), 1 closed (RST), rejected (ICMP) or silent.
    pub fn tcp(r: &TcpResult) -> Outcome {
        Outcome::from_bool(r.state == TcpState::Open)
    }

    /// `pmtu`: 0 a path MTU was found, 1 a blackhole (or no size got through).
    pub fn pmtu(r: &PmtuResult) -> Outcome {
        Outcome::from_bool(r.pmtu.is_some() && r.blackhole.is_none())
    }

    /// `trace`: 0 the destination answered, 1 it was not reached.
    pub fn trace(r: &TraceResult) -> Outcome {
        Outcome::from_bool(r.reached_at.is_some())
    }

    /// `explain`: 0 reachable with no problem found (a rate-limited hop on a
    /// reachable path is not a problem for the traffic), 1 any other verdict.
    pub fn explain(v: &Diagnosis) -> Outcome {
        Outcome::from_bool(!v.is_problem())
    }

    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Ok => OK,
            Outcome::Negative => NEGATIVE,
        })
    }
}

/// An error that means the command could not be asked (exit 2): wraps the
/// real error and prints exactly like it.
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// Marks `e` as a usage error (exit 2).
pub fn usage(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Usage(e))
}

/// The exit code for an error: 2 for usage and permission errors (a
/// kernel EPERM/EACCES the up-front check could not foresee counts too),
/// 3 for everything that failed while running.
pub fn for_error(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        c.is::<Usage>()
            || c.is::<crate::privilege::Missing>()
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if usage { USAGE } else { RUNTIME }
}

/// The error on one line, outermost first, each cause once: library
/// errors often repeat their source in their own message ("failed to
/// create map X: failed to create map X: ..."), so a cause already
/// contained in the text before it is left out.
pub fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let msg = c.to_string();
        if out.contains(msg.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

/// The "Exit status" section of a command's `--help`: what 0 and 1 mean
/// for it; 2 and 3 are the same everywhere. Expands to a literal, so it
/// can be `concat!`ed into clap attributes.
#[macro_export]
macro_rules! exit_help {
    ($ok:literal, $no:literal) => {
        concat!(
            "Exit status:\n  0  ",
            $ok,
            "\n  1  ",
            $no,
            "\n  2  could not ask: usage error, missing capability, unknown host or interface\n  3  failed while running (kernel, socket or I/O error)"
        )
    };
}

/// The section of the top-level `--help`.
pub const HELP: &str = concat!(
    "Exit status (scripts can branch on it: `netobs tcp host:443 || alert`):\n",
    "  0  tcp open, pmtu path MTU found, trace reached, explain reachable with no problem; watch stopped as asked\n",
    "  1  tcp closed, rejected or silent; pmtu blackhole; trace not reached; explain found a problem\n",
    "  2  could not ask: usage error, missing capability, unknown host or interface\n",
    "  3  failed while running (kernel, socket or I/O error)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_privilege_errors_exit_2_others_3() {
        let plain = anyhow::anyhow!("socket went away");
        assert_eq!(for_error(&plain), RUNTIME);
        let u = usage(anyhow::anyhow!("no such host"));
        assert_eq!(for_error(&u), USAGE);
        // Context on top keeps the classification.
        let u = u.context("netobs tcp");
        assert_eq!(for_error(&u), USAGE);
        // The wrapper prints like the error it wraps.
        assert_eq!(format!("{:#}", usage(anyhow::anyhow!("a").context("b"))), "b: a");
        let missing = anyhow::Error::new(crate::privilege::Missing {
            command: "watch",
            missing: vec![caps::Capability::CAP_BPF],
            needed: vec![caps::Capability::CAP_BPF],
        });
        assert_eq!(for_error(&missing), USAGE);
        let eperm = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EPERM)).context("loading");
        assert_eq!(for_error(&eperm), USAGE, "a kernel EPERM is a permission error");
    }

    /// A cause repeated by the error above it, as aya's map errors do.
    #[derive(Debug)]
    struct Repeats(std::io::Error);
    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed to create map `STATS`: {}", self.0)
        }
    }
    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::new(Repeats(std::io::Error::from_raw_os_error(libc::EPERM))).context("loading netobs");
        assert_eq!(render(&e), "loading netobs: failed to create map `STATS`: Operation not permitted (os error 1)");
        assert_eq!(render(&anyhow::anyhow!("a").context("b")), "b: a");
    }
}
