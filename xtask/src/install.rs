//! `cargo xtask install`: the release binary, the systemd unit, the
//! settings file, shell completions and man pages, under `--prefix`
//! (default /usr/local), optionally staged below `--destdir` (packaging,
//! tests).
//!
//! Completions and man pages come from the installed binary itself (the
//! hidden `netobs completions SHELL` and `netobs man [SUB]`), so they match
//! its `--help` exactly and need no build-time generation step.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use crate::{setup, util};

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// Installation prefix: the binary goes to PREFIX/bin, the unit to
    /// PREFIX/lib/systemd/system, completions and man pages to PREFIX/share.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// Stage every file below this directory; paths written into the unit
    /// still name PREFIX (for packages and tests).
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Where `default/netobs` goes. Default: /etc for the /usr and
    /// /usr/local prefixes, PREFIX/etc otherwise.
    #[arg(long, value_name = "DIR")]
    pub sysconfdir: Option<PathBuf>,
    /// Install this netobs binary instead of building the release one.
    #[arg(long, value_name = "FILE")]
    pub bin: Option<PathBuf>,
    /// Replace an existing settings file (by default it is kept: it holds
    /// this host's settings).
    #[arg(long)]
    pub force_config: bool,
}

/// Where each file goes, before `--destdir`.
#[derive(Debug)]
struct Layout {
    bin: PathBuf,
    unit: PathBuf,
    default_file: PathBuf,
    bash: PathBuf,
    zsh: PathBuf,
    fish: PathBuf,
    man1: PathBuf,
}

impl Layout {
    fn new(prefix: &Path, sysconfdir: Option<&Path>) -> Layout {
        let etc = match sysconfdir {
            Some(d) => d.to_path_buf(),
            None if prefix == Path::new("/usr") || prefix == Path::new("/usr/local") => PathBuf::from("/etc"),
            None => prefix.join("etc"),
        };
        let share = prefix.join("share");
        Layout {
            bin: prefix.join("bin/netobs"),
            // systemd looks in /usr/local/lib/systemd/system and
            // /usr/lib/systemd/system; /etc/systemd/system is the admin's.
            unit: prefix.join("lib/systemd/system/netobs.service"),
            default_file: etc.join("default/netobs"),
            bash: share.join("bash-completion/completions/netobs"),
            zsh: share.join("zsh/site-functions/_netobs"),
            fish: share.join("fish/vendor_completions.d/netobs.fish"),
            man1: share.join("man/man1"),
        }
    }
}

pub fn run(args: &InstallArgs) -> Result<()> {
    if !args.prefix.is_absolute() {
        bail!("--prefix must be an absolute path (got {})", args.prefix.display());
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => {
            setup::ensure()?;
            util::build_netobs(true)?
        }
    };
    if !bin.is_file() {
        bail!("{} does not exist (build it with `cargo xtask build --release`, or drop --bin)", bin.display());
    }
    let layout = Layout::new(&args.prefix, args.sysconfdir.as_deref());
    let staged = |p: &Path| -> PathBuf {
        match &args.destdir {
            Some(d) => d.join(p.strip_prefix("/").unwrap_or(p)),
            None => p.to_path_buf(),
        }
    };

    let bin_bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    put(&staged(&layout.bin), &bin_bytes, 0o755)?;

    let unit_src = util::root().join("deploy/systemd/netobs.service");
    let unit = std::fs::read_to_string(&unit_src).with_context(|| format!("reading {}", unit_src.display()))?;
    put(&staged(&layout.unit), unit_for(&unit, &layout).as_bytes(), 0o644)?;

    let default_src = util::root().join("deploy/systemd/netobs.default");
    let default_dst = staged(&layout.default_file);
    if default_dst.exists() && !args.force_config {
        eprintln!("xtask: kept {} (local settings; --force-config replaces it)", default_dst.display());
    } else {
        let text = std::fs::read(&default_src).with_context(|| format!("reading {}", default_src.display()))?;
        put(&default_dst, &text, 0o644)?;
    }

    for (shell, path) in [("bash", &layout.bash), ("zsh", &layout.zsh), ("fish", &layout.fish)] {
        put(&staged(path), &netobs_output(&bin, &["completions", shell])?, 0o644)?;
    }
    put(&staged(&layout.man1.join("netobs.1")), &netobs_output(&bin, &["man"])?, 0o644)?;
    let subs = String::from_utf8(netobs_output(&bin, &["man", "--list"])?).context("subcommand list")?;
    for sub in subs.lines().map(str::trim).filter(|s| !s.is_empty()) {
        let page = netobs_output(&bin, &["man", sub])?;
        put(&staged(&layout.man1.join(format!("netobs-{sub}.1"))), &page, 0o644)?;
    }

    eprintln!("xtask: installed netobs under {}", staged(&args.prefix).display());
    if args.destdir.is_none() {
        eprintln!("xtask: next: systemctl daemon-reload && systemctl enable --now netobs");
        eprintln!("xtask: settings: {} (NETOBS_* variables)", layout.default_file.display());
    }
    Ok(())
}

/// The unit with the installed paths of the binary and the settings file.
fn unit_for(unit: &str, layout: &Layout) -> String {
    unit.replace("/usr/local/bin/netobs", &layout.bin.to_string_lossy())
        .replace("/etc/default/netobs", &layout.default_file.to_string_lossy())
}

/// What `netobs ARGS` prints (completions, man pages).
fn netobs_output(bin: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(bin).args(args).output().with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Writes `bytes` to `dst` through a temporary file and a rename, so a
/// running netobs binary is replaced rather than written over ("text file
/// busy").
fn put(dst: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = dst.parent().with_context(|| format!("{} has no parent", dst.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = dst.file_name().with_context(|| format!("{} has no file name", dst.display()))?;
    let tmp = dir.join(format!(".{}.xtask-tmp", name.to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, dst).with_context(|| format!("moving {} into place", dst.display()))?;
    eprintln!("xtask:   {}", dst.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_prefix() {
        let l = Layout::new(Path::new("/usr/local"), None);
        assert_eq!(l.bin, Path::new("/usr/local/bin/netobs"));
        assert_eq!(l.unit, Path::new("/usr/local/lib/systemd/system/netobs.service"));
        assert_eq!(l.default_file, Path::new("/etc/default/netobs"));
        assert_eq!(l.man1, Path::new("/usr/local/share/man/man1"));
        let l = Layout::new(Path::new("/opt/netobs"), None);
        assert_eq!(l.default_file, Path::new("/opt/netobs/etc/default/netobs"));
        let unit = unit_for("ExecStart=/usr/local/bin/netobs watch\nEnvironmentFile=-/etc/default/netobs\n", &l);
        assert_eq!(unit, "ExecStart=/opt/netobs/bin/netobs watch\nEnvironmentFile=-/opt/netobs/etc/default/netobs\n");
    }

    /// The real binary (built by `cargo xtask build` / `cargo xtask test`
    /// before the host tests) into a temporary prefix; then the installed
    /// unit through `systemd-analyze verify`, its man page included.
    #[test]
    fn installs_into_a_prefix_and_the_unit_verifies() {
        let bin = util::target_dir().join("debug/netobs");
        assert!(bin.is_file(), "{} missing: run `cargo xtask build` first", bin.display());
        let dir = std::env::temp_dir().join(format!("netobs-install-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let args = InstallArgs {
            prefix: dir.clone(),
            destdir: None,
            sysconfdir: None,
            bin: Some(bin.clone()),
            force_config: false,
        };
        run(&args).expect("install");
        let l = Layout::new(&dir, None);
        let meta = std::fs::metadata(&l.bin).expect("installed binary");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        let version = Command::new(&l.bin).arg("--version").output().expect("netobs --version");
        let version = String::from_utf8_lossy(&version.stdout).into_owned();
        assert!(version.starts_with("netobs ") && version.contains("(commit "), "{version}");
        let unit = std::fs::read_to_string(&l.unit).expect("unit");
        assert!(unit.contains(&format!("ExecStart={} watch", l.bin.display())), "{unit}");
        assert!(unit.contains(&format!("EnvironmentFile=-{}", l.default_file.display())), "{unit}");
        let default = std::fs::read_to_string(&l.default_file).expect("settings file");
        assert!(default.contains("NETOBS_METRICS_ADDR="), "{default}");
        let bash = std::fs::read_to_string(&l.bash).expect("bash completion");
        assert!(bash.contains("--metrics-addr") && !bash.is_empty());
        let status = Command::new("bash").arg("-n").arg(&l.bash).status().expect("bash -n");
        assert!(status.success(), "the bash completion does not parse");
        assert!(std::fs::read_to_string(&l.zsh).expect("zsh").starts_with("#compdef netobs"));
        assert!(l.fish.is_file());
        let watch_page = std::fs::read_to_string(l.man1.join("netobs-watch.1")).expect("netobs-watch.1");
        assert!(watch_page.contains(".TH netobs-watch 1") && watch_page.contains("NETOBS_METRICS_ADDR"));
        assert!(l.man1.join("netobs.1").is_file() && l.man1.join("netobs-explain.1").is_file());

        // Settings survive a second install.
        std::fs::write(&l.default_file, "NETOBS_IFACE=eth9\n").expect("edit settings");
        run(&args).expect("second install");
        assert_eq!(std::fs::read_to_string(&l.default_file).expect("settings"), "NETOBS_IFACE=eth9\n");

        // systemd's own check of the unit: directives, capabilities, the
        // binary it starts, and Documentation=man:netobs-watch(1).
        match Command::new("systemd-analyze").arg("verify").arg(&l.unit).env("MANPATH", dir.join("share/man")).output()
        {
            Ok(out) => assert!(
                out.status.success() && out.stderr.is_empty(),
                "systemd-analyze verify: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(!ci, "systemd-analyze missing under CI ({e}); `cargo xtask setup` installs it");
                eprintln!("SKIP systemd-analyze verify: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
