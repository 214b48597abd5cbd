//! pcap and pcapng files, through the `pcap-file` crate's block and raw
//! record readers.
//!
//! Why the raw readers: `pcap-file` 2.0's checked pcap packet refuses a
//! record whose wire length is above the snapshot length, which is
//! exactly what a capture with `-s 96` holds, and its pcapng packet
//! timestamps ignore `if_tsresol`. Both are done here instead: a record
//! is taken as it is and judged by the caller (cut by the snapshot
//! length, or malformed), and timestamps are scaled per interface.

use std::{
    io::Read,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use pcap_file::{
    PcapError, TsResolution,
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{enhanced_packet::EnhancedPacketOption, interface_description::InterfaceDescriptionOption},
    },
};

use super::linktype::{LinkType, Way};

/// Why a capture could not be read (on).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Not a pcap or pcapng file (the first four bytes say so).
    #[error("not a pcap or pcapng capture (it starts with {0:02x?})")]
    NotACapture([u8; 4]),
    /// The file header is there but cannot be read.
    #[error("the capture's file header is unreadable: {0}")]
    BadHeader(String),
    /// The capture ends inside a record: it was cut short (a capture
    /// copied while tcpdump was still writing, a disk that filled up).
    #[error("the capture ends inside a record (cut short)")]
    CutShort,
    /// A record that cannot be parsed: nothing after it can be trusted.
    #[error("damaged record: {0}")]
    Damaged(String),
    #[error("reading the capture: {0}")]
    Io(#[source] std::io::Error),
}

/// Which container the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// One interface of the capture (pcap files have exactly one).
#[derive(Clone, Debug)]
pub struct Iface {
    pub link: LinkType,
    /// pcapng `if_name`, when the capture says.
    pub name: Option<String>,
    pub snaplen: u32,
    /// pcapng `if_tsresol`: units per second (10^6 by default).
    units_per_sec: u128,
}

/// One captured record. `data` holds the captured bytes (at most the
/// snapshot length); `wire_len` how long the frame was on the wire.
#[derive(Debug)]
pub struct Record<'a> {
    pub ts: SystemTime,
    pub wire_len: u32,
    pub data: &'a [u8],
    /// Index into [`Capture::ifaces`].
    pub iface: usize,
    /// That interface's link type and name.
    pub link: LinkType,
    pub name: Option<&'a str>,
    pub way: Way,
}

/// A `Read` that counts what went through it (for the progress bar).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Input = Counting<Box<dyn Read>>;

enum Inner {
    Pcap { reader: PcapReader<Input>, nanos: bool },
    PcapNg { reader: PcapNgReader<Input> },
}

/// An open capture, read record by record.
pub struct Capture {
    inner: Inner,
    pub format: Format,
    pub ifaces: Vec<Iface>,
    /// Bytes read from the input so far.
    pub bytes_read: Arc<AtomicU64>,
    /// pcapng: the data of the last packet block (the reader's own buffer
    /// is refilled by the next block, so the record is copied out).
    buf: Vec<u8>,
}

fn io_or_cut(e: PcapError) -> CaptureError {
    match e {
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => CaptureError::CutShort,
        PcapError::IncompleteBuffer => CaptureError::CutShort,
        PcapError::IoError(io) => CaptureError::Io(io),
        other => CaptureError::Damaged(other.to_string()),
    }
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAP_MAGICS: [[u8; 4]; 4] =
    [[0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4], [0x4d, 0x3c, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d]];

impl Capture {
    /// Opens a capture from any byte stream (a file, stdin): the first four
    /// bytes say whether it is pcap or pcapng.
    pub fn open(mut input: Box<dyn Read>) -> Result<Capture, CaptureError> {
        let mut magic = [0u8; 4];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => CaptureError::NotACapture(magic),
            _ => CaptureError::Io(e),
        })?;
        let bytes_read = Arc::new(AtomicU64::new(0));
        let chained: Box<dyn Read> = Box::new(std::io::Cursor::new(magic).chain(input));
        let input = Counting { inner: chained, read: bytes_read.clone() };
        if magic == PCAPNG_MAGIC {
            let reader = PcapNgReader::new(input).map_err(|e| CaptureError::BadHeader(e.to_string()))?;
            return Ok(Capture {
                inner: Inner::PcapNg { reader },
                format: Format::PcapNg,
                ifaces: Vec::new(),
                bytes_read,
                buf: Vec::new(),
            });
        }
        if !PCAP_MAGICS.contains(&magic) {
            return Err(CaptureError::NotACapture(magic));
        }
        let reader = PcapReader::new(input).map_err(|e| CaptureError::BadHeader(e.to_string()))?;
        let h = reader.header();
        let iface = Iface {
            link: LinkType::from_number(u32::from(h.datalink)),
            name: None,
            snaplen: h.snaplen,
            units_per_sec: 1_000_000,
        };
        let nanos = h.ts_resolution == TsResolution::NanoSecond;
        Ok(Capture {
            inner: Inner::Pcap { reader, nanos },
            format: Format::Pcap,
            ifaces: vec![iface],
            bytes_read,
            buf: Vec::new(),
        })
    }

    /// The next record; `None` at the end of the capture. After an error
    /// nothing more can be read.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        match &mut self.inner {
            Inner::Pcap { reader, nanos } => {
                let nanos = *nanos;
                let raw = match reader.next_raw_packet()? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(io_or_cut(e))),
                };
                let frac = if nanos { u64::from(raw.ts_frac) } else { u64::from(raw.ts_frac).saturating_mul(1000) };
                let ts =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(frac);
                self.buf.clear();
                self.buf.extend_from_slice(&raw.data);
                let Some(iface) = self.ifaces.first() else {
                    return Some(Err(CaptureError::Damaged("no interface".into())));
                };
                Some(Ok(Record {
                    ts,
                    wire_len: raw.orig_len,
                    data: &self.buf,
                    iface: 0,
                    link: iface.link,
                    name: None,
                    way: Way::Unknown,
                }))
            }
            Inner::PcapNg { reader } => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(io_or_cut(e))),
                };
                match block {
                    Block::SectionHeader(_) => self.ifaces.clear(),
                    Block::InterfaceDescription(idb) => {
                        let mut iface = Iface {
                            link: LinkType::from_number(u32::from(idb.linktype)),
                            name: None,
                            snaplen: idb.snaplen,
                            units_per_sec: 1_000_000,
                        };
                        for o in &idb.options {
                            match o {
                                InterfaceDescriptionOption::IfName(n) => iface.name = Some(n.to_string()),
                                InterfaceDescriptionOption::IfTsResol(r) => iface.units_per_sec = units_per_sec(*r),
                                _ => {}
                            }
                        }
                        self.ifaces.push(iface);
                    }
                    Block::EnhancedPacket(epb) => {
                        let Ok(ix) = usize::try_from(epb.interface_id) else { continue };
                        let Some(iface) = self.ifaces.get(ix) else {
                            return Some(Err(CaptureError::Damaged(format!(
                                "a packet names interface {} that the capture never described",
                                epb.interface_id
                            ))));
                        };
                        // The crate hands the raw timestamp units over as nanoseconds.
                        let ts = scale(epb.timestamp.as_nanos(), iface.units_per_sec);
                        let way = epb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                EnhancedPacketOption::Flags(f) => Some(match f & 3 {
                                    1 => Way::In,
                                    2 => Way::Out,
                                    _ => Way::Unknown,
                                }),
                                _ => None,
                            })
                            .unwrap_or_default();
                        self.buf.clear();
                        self.buf.extend_from_slice(&epb.data);
                        let (link, name) = (iface.link, iface.name.as_deref());
                        return Some(Ok(Record {
                            ts,
                            wire_len: epb.original_len,
                            data: &self.buf,
                            iface: ix,
                            link,
                            name,
                            way,
                        }));
                    }
                    Block::SimplePacket(spb) => {
                        if self.ifaces.is_empty() {
                            return Some(Err(CaptureError::Damaged(
                                "a packet before any interface description".into(),
                            )));
                        }
                        self.buf.clear();
                        self.buf.extend_from_slice(&spb.data);
                        let ts = SystemTime::UNIX_EPOCH;
                        let (link, name) = (self.ifaces[0].link, self.ifaces[0].name.as_deref());
                        return Some(Ok(Record {
                            ts,
                            wire_len: spb.original_len,
                            data: &self.buf,
                            iface: 0,
                            link,
                            name,
                            way: Way::Unknown,
                        }));
                    }
                    Block::Packet(pb) => {
                        let ix = usize::from(pb.interface_id);
                        let Some(iface) = self.ifaces.get(ix) else {
                            return Some(Err(CaptureError::Damaged(format!(
                                "a packet names interface {} that the capture never described",
                                pb.interface_id
                            ))));
                        };
                        let ts = scale(u128::from(pb.timestamp), iface.units_per_sec);
                        self.buf.clear();
                        self.buf.extend_from_slice(&pb.data);
                        let (link, name) = (iface.link, iface.name.as_deref());
                        return Some(Ok(Record {
                            ts,
                            wire_len: pb.original_len,
                            data: &self.buf,
                            iface: ix,
                            link,
                            name,
                            way: Way::Unknown,
                        }));
                    }
                    _ => {}
                }
            },
        }
    }
}

/// `if_tsresol`: high bit clear, 10^-n seconds; set, 2^-n.
fn units_per_sec(r: u8) -> u128 {
    let n = u32::from(r & 0x7f);
    let units = if r & 0x80 == 0 { 10u128.checked_pow(n) } else { 2u128.checked_pow(n) };
    units.unwrap_or(1_000_000).max(1)
}

fn scale(units: u128, per_sec: u128) -> SystemTime {
    let secs = units / per_sec;
    let nanos = (units % per_sec) * 1_000_000_000 / per_sec;
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX / 4))
        + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_time_units() {
        assert_eq!(units_per_sec(6), 1_000_000);
        assert_eq!(units_per_sec(9), 1_000_000_000);
        assert_eq!(units_per_sec(0x80 | 10), 1024);
        let t = scale(1_500_000, 1_000_000);
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn not_a_capture_is_said_with_its_first_bytes() {
        let r = Capture::open(Box::new(&b"GET / HTTP/1.1"[..]));
        assert!(matches!(r, Err(CaptureError::NotACapture(m)) if &m == b"GET "));
        assert!(matches!(Capture::open(Box::new(&b"ab"[..])), Err(CaptureError::NotACapture(_))));
    }

    /// A pcap file header (little endian, microseconds) for `link`.
    fn header(link: u32, snaplen: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&link.to_le_bytes());
        h
    }

    #[test]
    fn records_cut_by_the_snapshot_length_are_read_and_a_cut_file_is_said() {
        let mut f = header(228, 20);
        for (sec, usec) in [(10u32, 500u32), (11, 0)] {
            f.extend_from_slice(&sec.to_le_bytes());
            f.extend_from_slice(&usec.to_le_bytes());
            f.extend_from_slice(&20u32.to_le_bytes()); // captured
            f.extend_from_slice(&1500u32.to_le_bytes()); // on the wire: above the snaplen
            f.extend_from_slice(&[0x45; 20]);
        }
        f.extend_from_slice(&[1, 2, 3]); // a record header cut short
        let mut c = Capture::open(Box::new(std::io::Cursor::new(f))).unwrap();
        assert_eq!(c.ifaces[0].link, LinkType::Ipv4);
        let r = c.next_record().unwrap().unwrap();
        assert_eq!((r.wire_len, r.data.len()), (1500, 20));
        assert_eq!(r.ts.duration_since(SystemTime::UNIX_EPOCH).unwrap(), Duration::new(10, 500_000));
        assert!(c.next_record().unwrap().is_ok());
        assert!(matches!(c.next_record(), Some(Err(CaptureError::CutShort))));
    }
}
