//! Running external commands (`ip`, `nft`, `sysctl`, test tools) with errors
//! that are useful when a root-only test fails on a CI box nobody can log into:
//! every error names the full command line, its exit status, its stderr and,
//! for batch/script invocations, the script that was fed on stdin.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// Renders a command line the way a human would retype it in a shell.
pub(crate) fn render(cmd: &Command) -> String {
    let mut parts = vec![quote(cmd.get_program())];
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c));
    if plain { s.into_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Runs `cmd` to completion, feeding `stdin` if given; only a failure to start
/// (or to talk to) the process is an error, the exit status is not checked.
pub(crate) fn output(mut cmd: Command, stdin: Option<&str>) -> Result<Output> {
    let line = render(&cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{line}`"))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        // Inputs are small (a few rules or `ip` lines), so writing everything
        // before reading the output cannot deadlock on full pipes.
        pipe.write_all(input.as_bytes()).with_context(|| format!("cannot write stdin of `{line}`"))?;
    }
    child.wait_with_output().with_context(|| format!("cannot wait for `{line}`"))
}

/// Like [`output`] but a non-zero exit status is an error naming the command.
pub(crate) fn checked(cmd: Command, stdin: Option<&str>) -> Result<Output> {
    let line = render(&cmd);
    let out = output(cmd, stdin)?;
    ensure_success(&line, stdin, &out)?;
    Ok(out)
}

/// Builds the error for a command that ran but failed.
pub(crate) fn ensure_success(line: &str, stdin: Option<&str>, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let mut msg = format!("command `{line}` failed ({})", out.status);
    if let Some(input) = stdin {
        msg.push_str("\n--- stdin ---\n");
        msg.push_str(input.trim_end());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        msg.push_str("\n--- stderr ---\n");
        msg.push_str(stderr.trim_end());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        msg.push_str("\n--- stdout ---\n");
        msg.push_str(stdout.trim_end());
    }
    bail!(msg)
}

/// `Command` for `program args...`, for the common case of plain string args.
pub(crate) fn new<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_quotes_only_when_needed() {
        let cmd = new("nft", &["add rule inet netobs forward", "x'y", "plain-1.2/3"]);
        assert_eq!(render(&cmd), r"nft 'add rule inet netobs forward' 'x'\''y' plain-1.2/3");
    }

    #[test]
    fn failure_message_names_command_status_and_stderr() {
        let err = checked(new("sh", &["-c", "echo oops >&2; exit 3"]), None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("`sh -c 'echo oops >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
    }
}
