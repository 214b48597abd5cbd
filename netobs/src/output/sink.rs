//! Where output lines go: stdout (text or JSON lines), optionally a JSON
//! file, and what happens when they cannot be written.
//!
//! - A closed stdout (`netobs watch --json | head -1`) is not an error: it
//!   means the reader has what it wanted. The sink remembers it and the
//!   caller shuts down in order (detach, exit 0). Rust ignores SIGPIPE, so
//!   the write returns EPIPE instead of killing the process, and nothing
//!   here uses `println!`, which panics on it.
//! - Any other write error (a full disk under `--json-file`) is transient:
//!   counted as `output`, logged at most once a second, and the next line
//!   is tried again.
//! - `--json-file` is opened in append mode, and [`Sink::reopen`] (SIGHUP)
//!   opens it again by name, so logrotate can move it away and signal.

use std::{
    fs::File,
    io::{self, Write as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use crate::{
    cli::Color,
    explain::{Aggregate, words},
    health::{self, Op},
    output::json,
};

/// The reader of stdout went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Closed;

/// Writes `s` to `w` and flushes. A closed pipe is [`Closed`]; any other
/// error is counted as transient and swallowed (the next write retries).
fn write_to(w: &mut dyn io::Write, s: &str) -> Result<(), Closed> {
    match w.write_all(s.as_bytes()).and_then(|()| w.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Closed),
        Err(e) => {
            health::transient(Op::Output, &e);
            Ok(())
        }
    }
}

/// Writes `s` (which carries its own newlines) to stdout.
pub(crate) fn stdout(s: &str) -> Result<(), Closed> {
    write_to(&mut io::stdout().lock(), s)
}

/// A line on stderr; never panics (eprintln! does when stderr is gone).
pub(crate) fn note(s: &str) {
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{s}");
}

/// Whether to colour: `--color always|never` decide; `auto` colours only
/// a terminal, and only when NO_COLOR is unset or empty (no-color.org: an
/// explicit command-line choice wins over the variable).
pub(crate) fn use_color(choice: Color, is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    match choice {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
    }
}

/// [`use_color`] for this process's stdout and environment.
pub(crate) fn color_for_stdout(choice: Color) -> bool {
    use std::io::IsTerminal as _;
    use_color(choice, io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

/// Whether `fd` is a pipe or socket whose reader has gone: poll(2)
/// reports POLLERR (pipe) or POLLHUP (socket) on the writing end.
fn reader_gone(fd: i32) -> bool {
    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// The JSON copy on disk.
struct JsonFile {
    path: PathBuf,
    file: File,
}

fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} for appending", path.display()))
}

/// Where `watch` lines go.
pub(crate) struct Sink {
    /// JSON lines on stdout instead of text.
    pub(crate) json: bool,
    color: bool,
    file: Option<JsonFile>,
    closed: bool,
    last_check: Instant,
}

impl Sink {
    /// `json_file` is created if missing and appended to.
    pub(crate) fn new(json: bool, color: bool, json_file: Option<&Path>) -> Result<Sink> {
        let file = match json_file {
            Some(p) => Some(JsonFile { path: p.to_path_buf(), file: open_append(p)? }),
            None => None,
        };
        Ok(Sink { json, color, file, closed: false, last_check: Instant::now() })
    }

    /// stdout was closed by its reader: time to stop. Noticed on the
    /// next write, or by asking the kernel (at most every 100 ms), so a
    /// quiet `watch | head -1` stops too, without waiting for a line.
    pub(crate) fn is_closed(&mut self) -> bool {
        if !self.closed && self.last_check.elapsed() >= Duration::from_millis(100) {
            self.last_check = Instant::now();
            if reader_gone(libc::STDOUT_FILENO) {
                log::info!("stdout was closed by its reader; stopping");
                self.closed = true;
            }
        }
        self.closed
    }

    fn out(&mut self, s: &str) {
        if !self.closed && stdout(s).is_err() {
            log::info!("stdout was closed by its reader; stopping");
            self.closed = true;
        }
    }

    /// One JSON record: stdout in JSON mode, and the file.
    pub(crate) fn record(&mut self, v: &serde_json::Value) {
        let line = format!("{v}\n");
        if self.json {
            self.out(&line);
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.file.write_all(line.as_bytes())
        {
            health::transient(Op::Output, &anyhow::Error::new(e).context(format!("writing {}", f.path.display())));
        }
    }

    /// A text line (text mode only).
    pub(crate) fn text(&mut self, s: &str) {
        if !self.json {
            self.out(&format!("{s}\n"));
        }
    }

    pub(crate) fn aggregate(&mut self, a: &Aggregate) {
        self.record(&json::finding(a));
        if !self.json {
            let block = words::block(a, self.color);
            self.text(&block);
        }
    }

    /// SIGHUP: opens `--json-file` again by name (logrotate moved it).
    /// On failure the old file is kept, so no line is lost to a typo in a
    /// rotation script.
    pub(crate) fn reopen(&mut self) {
        let Some(f) = &mut self.file else { return };
        match open_append(&f.path) {
            Ok(file) => {
                f.file = file;
                log::info!("reopened {}", f.path.display());
            }
            Err(e) => health::transient(Op::Output, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(Color::Auto, true, None));
        assert!(!use_color(Color::Auto, false, None), "a pipe gets no ANSI codes");
        assert!(!use_color(Color::Auto, true, Some(OsStr::new("1"))), "NO_COLOR set");
        assert!(use_color(Color::Auto, true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(use_color(Color::Always, false, Some(OsStr::new("1"))), "an explicit flag wins");
        assert!(!use_color(Color::Never, true, None));
    }

    /// A writer standing for a pipe whose reader has gone, or a full disk.
    struct Failing(io::ErrorKind);
    impl io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_closed_other_errors_are_transient() {
        assert_eq!(write_to(&mut Failing(io::ErrorKind::BrokenPipe), "x\n"), Err(Closed));
        let before = health::count(Op::Output);
        assert_eq!(write_to(&mut Failing(io::ErrorKind::StorageFull), "x\n"), Ok(()));
        assert_eq!(health::count(Op::Output), before + 1);
        let mut v = Vec::new();
        assert_eq!(write_to(&mut v, "a line\n"), Ok(()));
        assert_eq!(v, b"a line\n");
    }

    #[test]
    fn a_pipe_without_reader_is_noticed_without_writing() {
        let mut fds = [0; 2];
        // SAFETY: a valid array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!reader_gone(fds[1]), "the reader is still there");
        // SAFETY: closing our own descriptors.
        unsafe { libc::close(fds[0]) };
        assert!(reader_gone(fds[1]));
        unsafe { libc::close(fds[1]) };
    }

    #[test]
    fn json_file_is_appended_and_reopened_by_name() {
        let dir = std::env::temp_dir().join(format!("netobs-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.json");
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let mut s = Sink::new(false, false, Some(&path)).unwrap();
        s.file.as_mut().unwrap().file.write_all(b"{\"a\":1}\n").unwrap();
        // logrotate: move it away, then SIGHUP.
        let rotated = dir.join("events.json.1");
        std::fs::rename(&path, &rotated).unwrap();
        s.reopen();
        s.record(&serde_json::json!({"b": 2}));
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"old\":1}\n{\"a\":1}\n", "appended, not truncated");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\":2}\n", "new lines go to the new file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
