//! Is a frag-needed / Packet Too Big believable?
//!
//! A PTB lowers the path MTU of whoever believes it, and anyone on the path
//! (or anyone who can spoof a router's address) can send one: a forged
//! frag-needed can force fragmentation or tiny segments, and a bogus one
//! leads to wrong advice ("clamp MSS to ..."). So a PTB is judged before it
//! is used, the way scamper flags PTB_BAD:
//! - the MTU it announces cannot be right: not smaller than the length of
//!   the packet it quotes (a router that could forward that packet would
//!   not complain), or non-zero and below the protocol minimum (68 bytes for
//!   IPv4, RFC 791; 1280 for IPv6, RFC 8200). MTU 0 in an IPv4 frag-needed
//!   is legal: routers older than RFC 1191 send it (the sender then has to
//!   guess). IPv6 has no such history, so 0 there is below the minimum;
//! - it quotes a flow this host never sent (when the caller can tell: for
//!   `explain`, "one of our probes"; for `watch`, a socket, a conntrack
//!   entry or a recent flow).
//!
//! Pure, so every rule is a unit test.

use serde::Serialize;

/// Smallest IPv4 MTU (RFC 791: every module must forward 68 bytes).
pub const MIN_MTU_V4: u32 = 68;
/// Smallest IPv6 MTU (RFC 8200 section 5).
pub const MIN_MTU_V6: u32 = 1280;

/// Why a PTB is not believed (`reasons` in JSON, snake_case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PtbSuspect {
    /// The announced MTU is at least the quoted packet's length.
    MtuNotSmaller,
    /// Non-zero (IPv6: any) MTU below the protocol minimum.
    MtuBelowMinimum,
    /// It quotes a flow this host never sent.
    UnknownFlow,
}

impl PtbSuspect {
    /// The reason in words, for the finding.
    pub fn words(self, family: u8, mtu: u32, quoted_len: Option<u16>) -> String {
        match self {
            PtbSuspect::MtuNotSmaller => format!(
                "it announces MTU {mtu} for a {}-byte packet: a router that could forward {mtu} bytes would have forwarded it",
                quoted_len.unwrap_or(0)
            ),
            PtbSuspect::MtuBelowMinimum => {
                let min = if family == 4 { MIN_MTU_V4 } else { MIN_MTU_V6 };
                format!("it announces MTU {mtu}, below the IPv{family} minimum of {min}")
            }
            PtbSuspect::UnknownFlow => "it quotes a packet this host never sent".to_string(),
        }
    }
}

/// The verdict on one PTB: every reason that applies, empty if believable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PtbJudgement {
    pub reasons: Vec<PtbSuspect>,
}

impl PtbJudgement {
    pub fn believable(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The first reason (what `watch` shows in one line).
    pub fn first(&self) -> Option<PtbSuspect> {
        self.reasons.first().copied()
    }

    /// All reasons in words, joined.
    pub fn words(&self, family: u8, mtu: u32, quoted_len: Option<u16>) -> String {
        self.reasons.iter().map(|r| r.words(family, mtu, quoted_len)).collect::<Vec<_>>().join("; ")
    }
}

/// Judges a PTB announcing `mtu` (family 4 or 6) that quotes a packet of
/// `quoted_len` bytes (its IP total length as quoted, when the quote had
/// it). `ours`: whether the quoted flow is one this host sent (`None`: the
/// caller cannot tell, so that rule is not applied).
pub fn judge_ptb(family: u8, mtu: u32, quoted_len: Option<u16>, ours: Option<bool>) -> PtbJudgement {
    let mut reasons = Vec::new();
    let min = if family == 4 { MIN_MTU_V4 } else { MIN_MTU_V6 };
    let legal_zero = family == 4 && mtu == 0;
    if !legal_zero && mtu < min {
        reasons.push(PtbSuspect::MtuBelowMinimum);
    }
    if mtu != 0
        && let Some(len) = quoted_len
        && mtu >= u32::from(len)
    {
        reasons.push(PtbSuspect::MtuNotSmaller);
    }
    if ours == Some(false) {
        reasons.push(PtbSuspect::UnknownFlow);
    }
    PtbJudgement { reasons }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_ptb_is_believed() {
        assert!(judge_ptb(4, 1400, Some(1500), Some(true)).believable());
        assert!(judge_ptb(6, 1280, Some(1500), Some(true)).believable());
        assert!(judge_ptb(4, 1400, None, None).believable(), "no quote length, no ownership: nothing to object to");
    }

    #[test]
    fn mtu_not_smaller_than_the_quoted_packet() {
        let j = judge_ptb(4, 9000, Some(1500), None);
        assert_eq!(j.reasons, vec![PtbSuspect::MtuNotSmaller]);
        // Equal is as wrong as larger: the packet fits.
        assert_eq!(judge_ptb(6, 1500, Some(1500), None).reasons, vec![PtbSuspect::MtuNotSmaller]);
        assert!(judge_ptb(4, 1499, Some(1500), None).believable());
    }

    #[test]
    fn mtu_below_the_protocol_minimum() {
        assert_eq!(judge_ptb(4, 67, Some(1500), None).reasons, vec![PtbSuspect::MtuBelowMinimum]);
        assert!(judge_ptb(4, 68, Some(1500), None).believable());
        assert_eq!(judge_ptb(6, 1279, Some(1500), None).reasons, vec![PtbSuspect::MtuBelowMinimum]);
    }

    #[test]
    fn mtu_zero_is_legal_for_ipv4_only() {
        // Pre-RFC 1191 routers send 0: not a forgery, the sender must guess.
        assert!(judge_ptb(4, 0, Some(1500), Some(true)).believable());
        // IPv6 never had that: 0 is below 1280.
        assert_eq!(judge_ptb(6, 0, Some(1500), None).reasons, vec![PtbSuspect::MtuBelowMinimum]);
    }

    #[test]
    fn a_flow_we_never_sent() {
        let j = judge_ptb(4, 9000, Some(1500), Some(false));
        assert_eq!(j.reasons, vec![PtbSuspect::MtuNotSmaller, PtbSuspect::UnknownFlow]);
        assert_eq!(j.first(), Some(PtbSuspect::MtuNotSmaller));
        let w = j.words(4, 9000, Some(1500));
        assert!(w.contains("MTU 9000 for a 1500-byte packet") && w.contains("never sent"), "{w}");
        assert_eq!(judge_ptb(4, 1400, Some(1500), Some(false)).reasons, vec![PtbSuspect::UnknownFlow]);
    }
}
