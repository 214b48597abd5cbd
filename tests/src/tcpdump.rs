//! tcpdump's printed decode as an outside oracle: the ICMP and ICMPv6
//! errors in the expected output (`.out`) of tcpdump's own test suite
//! (`TZ=GMT0 tcpdump -# -n -tttt -r CAPTURE FLAGS`), parsed from the text.
//!
//! Only what tcpdump prints is taken: type and code (from its words),
//! reporter and destination, the announced MTU ("need to frag (mtu N)",
//! "packet too big, mtu N"), the quoted destination and port of an
//! unreachable ("ICMP 12.1.1.1 udp port 33441 unreachable"), and with
//! `-v` the quoted packet's header (TTL, length, addresses, ports) and
//! RFC 4950 MPLS label stacks. The labels are parsed here for the test of
//! the RFC 4884 decoder (see [`Expected::mpls`]).

use std::net::IpAddr;

/// One MPLS label stack entry as tcpdump prints it
/// ("label 100704, tc 0, [S], ttl 1"; older versions say "exp").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MplsEntry {
    pub label: u32,
    pub tc: u8,
    pub bottom: bool,
    pub ttl: u8,
}

/// The quoted packet's header, printed with `-v`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quoted {
    pub ttl: Option<u8>,
    pub length: Option<u16>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// "UDP", "TCP", "ICMP" from `proto NAME (n)`.
    pub proto: Option<String>,
}

/// One ICMP error tcpdump decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The frame number (`-#`).
    pub frame: u64,
    pub family: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub reporter: IpAddr,
    pub to: IpAddr,
    pub mtu: Option<u32>,
    /// The quoted destination named in the unreachable text itself.
    pub named_dst: Option<IpAddr>,
    /// "udp" / "tcp" port N in the unreachable text.
    pub named_port: Option<(String, u16)>,
    /// With `-v`: the quoted packet's header lines.
    pub quoted: Option<Quoted>,
    /// tcpdump ran out of bytes itself (`[|icmp]`): the frame is cut.
    pub cut: bool,
    /// RFC 4950 label stack entries, in order (empty when none printed).
    pub mpls: Vec<MplsEntry>,
    /// The block's text, for failure messages.
    pub text: String,
}

/// The frame blocks of a `.out`: a block starts with the frame number and
/// the date (`   12  2004-06-14 ...`).
fn blocks(out: &str) -> Vec<(u64, Vec<&str>)> {
    let mut v: Vec<(u64, Vec<&str>)> = Vec::new();
    for line in out.lines() {
        let t = line.trim_start();
        let mut it = t.splitn(2, ' ');
        let n = it.next().and_then(|n| n.parse::<u64>().ok());
        let dated = it
            .next()
            .map(str::trim_start)
            .is_some_and(|r| r.len() > 10 && r.as_bytes()[4] == b'-' && r.as_bytes()[7] == b'-');
        match n {
            Some(n) if dated && !line.starts_with('\t') => v.push((n, vec![line])),
            _ => {
                if let Some(b) = v.last_mut() {
                    b.1.push(line);
                }
            }
        }
    }
    v
}

fn ip(s: &str) -> Option<IpAddr> {
    s.trim_end_matches([',', ':']).parse().ok()
}

/// "a.b.c.d.port" or "2001:db8::1.port" (tcpdump appends the port after a dot).
fn addr_port(s: &str) -> (Option<IpAddr>, Option<u16>) {
    let s = s.trim_end_matches(':');
    if let Some(a) = ip(s) {
        return (Some(a), None);
    }
    match s.rsplit_once('.') {
        Some((a, p)) => (ip(a), p.parse().ok()),
        None => (None, None),
    }
}

/// (family, type, code) from tcpdump's words for an ICMPv4 message.
fn v4_kind(msg: &str) -> Option<(u8, u8)> {
    let m = msg;
    if m.starts_with("time exceeded in-transit") {
        return Some((11, 0));
    }
    if m.starts_with("ip reassembly time exceeded") {
        return Some((11, 1));
    }
    if m.starts_with("source quench") {
        return Some((4, 0));
    }
    if m.starts_with("parameter problem") {
        return Some((12, 0));
    }
    if let Some(r) = m.strip_prefix("redirect") {
        let host = r.contains(" to host ");
        return Some((
            5,
            if r.starts_with("-tos") {
                if host { 3 } else { 2 }
            } else if host {
                1
            } else {
                0
            },
        ));
    }
    let un = m.find(" unreachable")?;
    let (head, tail) = (&m[..un], &m[un + " unreachable".len()..]);
    let code = if tail.starts_with(" - need to frag") {
        4
    } else if tail.starts_with(" - source route failed") {
        5
    } else if tail.starts_with(" - admin prohibited filter") {
        13
    } else if tail.starts_with(" - admin prohibited") {
        if head.starts_with("net ") { 9 } else { 10 }
    } else if tail.starts_with(" - tos prohibited") {
        if head.starts_with("net ") { 11 } else { 12 }
    } else if tail.starts_with(" - unknown") {
        if head.starts_with("net ") { 6 } else { 7 }
    } else if tail.starts_with(" - source host isolated") {
        8
    } else if tail.starts_with(" - host precedence violation") {
        14
    } else if tail.starts_with(" - precedence cutoff") {
        15
    } else if head.contains(" port ") {
        3
    } else if head.contains(" protocol ") {
        2
    } else if head.starts_with("net ") {
        0
    } else if head.starts_with("host ") {
        1
    } else {
        return None;
    };
    Some((3, code))
}

/// (type, code) from tcpdump's words for an ICMPv6 error.
fn v6_kind(msg: &str) -> Option<(u8, u8)> {
    if let Some(r) = msg.strip_prefix("destination unreachable, ") {
        let code = [
            "unreachable route",
            "unreachable prohibited",
            "unreachable beyond scope",
            "unreachable address",
            "unreachable port",
        ]
        .iter()
        .position(|p| r.starts_with(p))?;
        return Some((1, code as u8));
    }
    if msg.starts_with("packet too big") {
        return Some((2, 0));
    }
    if let Some(r) = msg.strip_prefix("time exceeded ") {
        return Some((3, if r.starts_with("in-transit") { 0 } else { 1 }));
    }
    if let Some(r) = msg.strip_prefix("parameter problem, ") {
        let code =
            ["erroneous", "next header", "option", "incomplete header chain"].iter().position(|p| r.starts_with(p))?;
        return Some((4, code as u8));
    }
    None
}

fn number_after(s: &str, key: &str) -> Option<u32> {
    let i = s.find(key)? + key.len();
    let digits: String = s[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Every ICMP/ICMPv6 error in a `.out` text.
pub fn parse_out(out: &str) -> Vec<Expected> {
    let mut v = Vec::new();
    for (frame, lines) in blocks(out) {
        // The line that carries "A > B: ICMP ..." (the first, or the second with -v).
        let Some((li, line)) = lines.iter().enumerate().find(|(_, l)| l.contains(": ICMP ") || l.contains(": ICMP6, "))
        else {
            continue;
        };
        let (v6, sep) = if line.contains(": ICMP6, ") { (true, ": ICMP6, ") } else { (false, ": ICMP ") };
        let Some((left, msg)) = line.split_once(sep) else { continue };
        let words: Vec<&str> = left.split_whitespace().collect();
        let Some(gt) = words.iter().rposition(|w| *w == ">") else { continue };
        let (Some(reporter), Some(to)) =
            (words.get(gt.wrapping_sub(1)).and_then(|w| ip(w)), words.get(gt + 1).and_then(|w| ip(w)))
        else {
            continue;
        };
        let kind = if v6 { v6_kind(msg) } else { v4_kind(msg) };
        let Some((icmp_type, icmp_code)) = kind else { continue };
        let mtu = if !v6 && icmp_code == 4 && icmp_type == 3 {
            number_after(msg, "(mtu ")
        } else if v6 && icmp_type == 2 {
            number_after(msg, "mtu ")
        } else {
            None
        };
        let mut named_dst = None;
        let mut named_port = None;
        if !v6 && icmp_type == 3 {
            let head = &msg[..msg.find(" unreachable").unwrap_or(0)];
            let w: Vec<&str> = head.split_whitespace().collect();
            named_dst = w.iter().find_map(|x| ip(x));
            if let Some(p) = w.iter().position(|x| *x == "port") {
                named_port = p
                    .checked_sub(1)
                    .and_then(|i| w.get(i))
                    .zip(w.get(p + 1))
                    .and_then(|(proto, n)| Some((proto.to_string(), n.parse().ok()?)));
            }
        }
        // -v: the quoted IP header follows (tab-indented "IP (...)" then "S > D: ...").
        let mut quoted = None;
        if let Some(qi) = lines
            .iter()
            .skip(li + 1)
            .position(|l| l.trim_start().starts_with("IP (") || l.trim_start().starts_with("IP6 ("))
        {
            let qline = lines[li + 1 + qi];
            let mut q = Quoted {
                ttl: number_after(qline, "ttl ").and_then(|n| u8::try_from(n).ok()),
                length: number_after(qline, "length ").and_then(|n| u16::try_from(n).ok()),
                proto: qline.split("proto ").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string),
                ..Quoted::default()
            };
            if let Some(next) = lines.get(li + 2 + qi) {
                let w: Vec<&str> = next.split_whitespace().collect();
                if let Some(gt) = w.iter().position(|x| *x == ">") {
                    (q.src, q.src_port) = w.get(gt.wrapping_sub(1)).map_or((None, None), |s| addr_port(s));
                    (q.dst, q.dst_port) = w.get(gt + 1).map_or((None, None), |s| addr_port(s));
                }
            }
            quoted = Some(q);
        }
        let mut mpls = Vec::new();
        for l in &lines[li..] {
            let t = l.trim_start();
            if let Some(r) = t.strip_prefix("label ") {
                let label = r.split(',').next().and_then(|n| n.trim().parse().ok());
                let tc = number_after(t, "tc ").or_else(|| number_after(t, "exp ")).and_then(|n| u8::try_from(n).ok());
                let ttl = number_after(t, "ttl ").and_then(|n| u8::try_from(n).ok());
                if let (Some(label), Some(tc), Some(ttl)) = (label, tc, ttl) {
                    mpls.push(MplsEntry { label, tc, bottom: t.contains("[S]"), ttl });
                }
            }
        }
        v.push(Expected {
            frame,
            family: if v6 { 6 } else { 4 },
            icmp_type,
            icmp_code,
            reporter,
            to,
            mtu,
            named_dst,
            named_port,
            quoted,
            cut: lines.iter().any(|l| l.contains("[|icmp")),
            mpls,
            text: lines.join("\n"),
        });
    }
    v
}

/// TESTLIST lines: (test name, capture, expected output, flags).
pub fn testlist(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_string();
            let cap = w.next()?.to_string();
            let out = w.next()?.to_string();
            let flags: Vec<&str> = w.collect();
            Some((name, cap, out, flags.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcpdump_words_for_the_common_errors() {
        let out = "    1  2004-06-14 10:13:29.333151 IP 12.1.1.1 > 12.4.4.4: ICMP 12.1.1.1 udp port 33441 unreachable, length 36\n    2  2004-06-14 10:13:29.333151 IP 198.18.2.1 > 198.18.0.1: ICMP 198.18.9.9 unreachable - need to frag (mtu 1400), length 556\n    3  2019-05-09 13:40:51.929516 IP6 2001:db8::1 > 2001:db8::2: ICMP6, packet too big, mtu 1280, length 1240\n    4  2019-05-09 13:40:51.929516 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 64\n";
        let e = parse_out(out);
        assert_eq!(e.len(), 3, "{e:#?}");
        assert_eq!((e[0].icmp_type, e[0].icmp_code, e[0].named_port.clone()), (3, 3, Some(("udp".into(), 33441))));
        assert_eq!(e[0].named_dst, "12.1.1.1".parse().ok());
        assert_eq!((e[1].icmp_code, e[1].mtu), (4, Some(1400)));
        assert_eq!((e[2].family, e[2].icmp_type, e[2].mtu), (6, 2, Some(1280)));
    }
}
