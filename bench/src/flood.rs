//! A spoofed ICMP-error flood for labs: random reporters and codes, sent as
//! raw Ethernet frames (AF_PACKET) out of a lab node's interface, paced
//! and bounded in count and time.
//!
//! Shared by `cargo xtask bench soak` and the end-to-end flood test
//! (`tests/tests/flood.rs` includes this file), so both attack the same way.
//!
//! Why AF_PACKET and not BPF_PROG_TEST_RUN live frames (as `bench watch`
//! does): a live-frames run repeats one frame, and every call has a fixed
//! setup cost of ~15 ms here, so per-packet random reporters would need one
//! call per packet. A packet socket sends a fresh frame per packet at a few
//! hundred thousand per second from one core, which is plenty.

#![allow(dead_code)]

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use netobs_common::craft::{Frame, Tcp};

/// Offsets in the frame built by [`Flood::template`] (Ethernet, no VLAN).
const IP: usize = 14;
const ICMP: usize = IP + 20;
const QUOTE: usize = ICMP + 8;

/// What the spoofed errors look like.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    /// The victim: the outer destination and the quoted packet's source.
    pub victim: Ipv4Addr,
    /// Port the quoted SYN-ACK comes from (a listener on the victim makes
    /// the spoofed quotes look exactly like a real rejection's).
    pub victim_port: u16,
    /// Packets per second.
    pub rate: u32,
    /// Stop after this many packets...
    pub max_packets: u64,
    /// ... or after this long, whichever comes first.
    pub max_time: Duration,
    /// Every error from one reporter (198.19.0.1) instead of random ones;
    /// codes and quoted clients stay random.
    pub one_reporter: bool,
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    pub failed: u64,
    pub elapsed: Duration,
}

/// A packet socket bound to one interface of a lab namespace.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
}

/// Runs `f` on a fresh thread inside the network namespace at `ns_path`
/// (setns changes only the calling thread, so the caller is untouched).
pub fn in_netns<T: Send + 'static>(
    ns_path: std::path::PathBuf,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns_path).with_context(|| format!("opening {}", ns_path.display()))?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {}", ns_path.display()));
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// MAC address of `ifname` in the calling thread's namespace.
pub fn mac_of(ifname: &str) -> Result<[u8; 6]> {
    // SAFETY: plain socket/ioctl on a zeroed ifreq with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket for SIOCGIFHWADDR");
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        if ifname.len() >= req.ifr_name.len() {
            bail!("interface name {ifname:?} too long");
        }
        for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("SIOCGIFHWADDR {ifname}"));
        }
        let sa = req.ifr_ifru.ifru_hwaddr.sa_data;
        Ok([sa[0] as u8, sa[1] as u8, sa[2] as u8, sa[3] as u8, sa[4] as u8, sa[5] as u8])
    }
}

impl PacketSocket {
    /// Opens a packet socket on `ifname` in the namespace `ns_path`; frames
    /// go to `dst_mac` (the victim's interface).
    pub fn open(ns_path: std::path::PathBuf, ifname: &str, dst_mac: [u8; 6]) -> Result<PacketSocket> {
        let ifname = ifname.to_string();
        in_netns(ns_path, move || {
            let cname = std::ffi::CString::new(ifname.clone())?;
            // SAFETY: NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
            if ifindex == 0 {
                bail!("no interface {ifname} in the flood namespace");
            }
            let src_mac = mac_of(&ifname)?;
            // SAFETY: plain socket(2); protocol 0 receives nothing.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
            }
            // SAFETY: we own the new descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex;
            // SAFETY: sll is a valid sockaddr_ll of the given length.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
            }
            // Straight to the driver: the flood should cost the sender
            // little, not measure the qdisc.
            let one: libc::c_int = 1;
            // SAFETY: valid int option.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_QDISC_BYPASS,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
            Ok(PacketSocket { fd, ifindex, src_mac, dst_mac })
        })
    }

    /// Sends up to 64 frames with one sendmmsg; returns how many left.
    fn send_batch(&self, frames: &[Vec<u8>]) -> usize {
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec { iov_base: f.as_ptr() as *mut libc::c_void, iov_len: f.len() })
            .collect();
        // SAFETY: zeroed mmsghdr is valid; each points at one iovec above.
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs and the iovecs/frames they point at outlive the call.
        let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        n.max(0) as usize
    }

    /// Sends `frame` `n` times (e.g. a marker or one real-looking error).
    pub fn send_repeated(&self, frame: &[u8], n: usize, gap: Duration) -> usize {
        let mut sent = 0;
        for _ in 0..n {
            sent += self.send_batch(&[frame.to_vec()]);
            std::thread::sleep(gap);
        }
        sent
    }

    /// Puts this socket's MACs on a frame built by `craft` (which uses
    /// fixed placeholder MACs).
    pub fn address(&self, frame: &mut [u8]) {
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
    }

    /// The flood: random reporters in 198.19.0.0/16, mostly ICMP 3 with a
    /// random code 0..=15 (unreachable, admin-prohibited, frag-needed...),
    /// the rest time-exceeded / parameter-problem with any code 0..=255,
    /// each quoting a SYN-ACK from the victim's port to a random client.
    /// Paced to `spec.rate` in 64-frame batches; stops at `max_packets`,
    /// `max_time`, or when `stop` is set.
    pub fn flood(&self, spec: &FloodSpec, stop: &std::sync::atomic::AtomicBool) -> FloodReport {
        let template = self.template(spec);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
        let mut batch: Vec<Vec<u8>> = vec![template.clone(); 64];
        let t0 = Instant::now();
        let mut report = FloodReport::default();
        while report.sent + report.failed < spec.max_packets
            && t0.elapsed() < spec.max_time
            && !stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            let left = (spec.max_packets - report.sent - report.failed).min(64) as usize;
            for f in batch.iter_mut().take(left) {
                randomize(f, next(&mut rng), spec.one_reporter);
            }
            // A full device queue refuses part of a batch: wait a little and
            // send the rest, so the rate is what the victim really got.
            let mut done = 0;
            let mut tries = 0;
            while done < left && tries < 100 {
                let n = self.send_batch(&batch[done..left]);
                done += n;
                if done < left {
                    tries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            report.sent += done as u64;
            report.failed += (left - done) as u64;
            let due = Duration::from_secs_f64((report.sent + report.failed) as f64 / f64::from(spec.rate.max(1)));
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        report.elapsed = t0.elapsed();
        report
    }

    fn template(&self, spec: &FloodSpec) -> Vec<u8> {
        let quote = Frame::ipv4(spec.victim, Ipv4Addr::new(198, 19, 0, 1))
            .ttl(62)
            .tcp(Tcp::new(spec.victim_port, 40000).syn_ack())
            .ip_bytes();
        let mut f = Frame::ipv4(Ipv4Addr::new(198, 19, 0, 1), spec.victim).ttl(63).icmp_error(3, 1, &quote).bytes();
        self.address(&mut f);
        f
    }
}

/// xorshift64*: cheap, good enough to make every key new.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// New reporter (unless `one_reporter`), type/code, quoted client address
/// and port; checksums fixed (the victim's kernel checks the ICMP one).
fn randomize(f: &mut [u8], r: u64, one_reporter: bool) {
    let b = r.to_le_bytes();
    // Outer source = reporter 198.19.x.y.
    if !one_reporter {
        f[IP + 14] = b[0];
        f[IP + 15] = b[1];
    }
    let (t, c) = if b[2] < 205 {
        (3u8, b[3] & 0x0f)
    } else if b[2] < 230 {
        (11, b[3])
    } else {
        (12, b[3])
    };
    f[ICMP] = t;
    f[ICMP + 1] = c;
    // Quoted destination (the "client") 198.19.x.y and its port.
    f[QUOTE + 18] = b[4];
    f[QUOTE + 19] = b[5];
    f[QUOTE + 22] = b[6];
    f[QUOTE + 23] = b[7] | 0x80;
    f[IP + 10] = 0;
    f[IP + 11] = 0;
    let c = checksum(&f[IP..ICMP]);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
    f[ICMP + 2] = 0;
    f[ICMP + 3] = 0;
    let c = checksum(&f[ICMP..]);
    f[ICMP + 2..ICMP + 4].copy_from_slice(&c.to_be_bytes());
}

/// RFC 1071 checksum: the shared one.
fn checksum(b: &[u8]) -> u16 {
    netobs_common::repr::checksum::of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomized_frames_keep_valid_checksums() {
        let quote = Frame::ipv4(Ipv4Addr::new(198, 18, 3, 1), Ipv4Addr::new(198, 19, 0, 1))
            .tcp(Tcp::new(65000, 40000).syn_ack())
            .ip_bytes();
        let f =
            Frame::ipv4(Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 18, 3, 1)).icmp_error(3, 1, &quote).bytes();
        for one_reporter in [false, true] {
            let mut g = f.clone();
            randomize(&mut g, 0x1234_5678_9abc_def0, one_reporter);
            assert_eq!(checksum(&g[IP..ICMP]), 0);
            assert_eq!(checksum(&g[ICMP..]), 0);
            assert_eq!(g[IP + 12..IP + 16] == f[IP + 12..IP + 16], one_reporter, "the reporter");
        }
    }
}
