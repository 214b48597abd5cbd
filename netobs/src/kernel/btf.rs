//! Struct member offsets from the kernel's own BTF (/sys/kernel/btf/vmlinux).
//!
//! The `icmp_send` tracepoint hands its program a `struct sk_buff *`; the
//! eBPF side is Rust, which cannot emit CO-RE relocations, so it reads the
//! fields it needs at offsets user space looks up here, for the running
//! kernel. Layouts do move between releases (6.18 put a `ns_type` in front
//! of `ns_common.inum`), which is why nothing is hard-coded.
//!
//! aya-obj parses BTF but keeps its member accessors crate-private, so
//! this is a small reader of the documented format
//! (Documentation/bpf/btf.rst): a header, a type section, a string
//! section. Only structs, unions and what a member's type resolves
//! through (typedefs, qualifiers) are interpreted; every other kind is
//! skipped by its documented size.

use anyhow::{Context as _, Result, bail};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One struct or union member.
#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bits from the start of the enclosing type; None for a bitfield.
    bit_offset: Option<u32>,
}

#[derive(Clone, Debug)]
struct Type {
    name_off: u32,
    kind: u32,
    /// Size in bytes (int, struct, union, enum) or referenced type id.
    size_or_type: u32,
    members: Vec<Member>,
}

/// A parsed BTF blob: its types (id 1 is `types[0]`) and strings.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16> {
    let s = b.get(off..off + 2).context("BTF truncated")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let s = b.get(off..off + 4).context("BTF truncated")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf> {
        let path = "/sys/kernel/btf/vmlinux";
        let bytes = std::fs::read(path).with_context(|| format!("reading {path} (the kernel needs BTF)"))?;
        Btf::parse(&bytes).with_context(|| format!("parsing {path}"))
    }

    /// Parses a little-endian BTF blob.
    pub fn parse(b: &[u8]) -> Result<Btf> {
        if u16_at(b, 0)? != MAGIC {
            bail!("not little-endian BTF (bad magic)");
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let (type_off, type_len) = (u32_at(b, 8)? as usize, u32_at(b, 12)? as usize);
        let (str_off, str_len) = (u32_at(b, 16)? as usize, u32_at(b, 20)? as usize);
        let section = |off: usize, len: usize| {
            hdr_len.checked_add(off).and_then(|s| Some((s, s.checked_add(len)?))).and_then(|(s, e)| b.get(s..e))
        };
        let tsec = section(type_off, type_len).context("BTF type section out of bounds")?;
        let strings = section(str_off, str_len).context("BTF string section out of bounds")?.to_vec();
        let mut types = Vec::new();
        let mut p = 0;
        while p < tsec.len() {
            let name_off = u32_at(tsec, p)?;
            let info = u32_at(tsec, p + 4)?;
            let size_or_type = u32_at(tsec, p + 8)?;
            p += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = p + i * 12;
                        let off = u32_at(tsec, m + 8)?;
                        // With kind_flag the offset packs a bitfield size
                        // (high 8 bits) over the bit offset (low 24).
                        let (bitfield, bits) = if kind_flag { (off >> 24 != 0, off & 0xff_ffff) } else { (false, off) };
                        members.push(Member {
                            name_off: u32_at(tsec, m)?,
                            type_id: u32_at(tsec, m + 4)?,
                            bit_offset: (!bitfield).then_some(bits),
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                0..=19 => 0,
                k => bail!("unknown BTF kind {k}"),
            };
            p += extra;
            types.push(Type { name_off, kind, size_or_type, members });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    fn get(&self, id: u32) -> Result<&Type> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize)).with_context(|| format!("BTF type id {id} missing"))
    }

    /// Follows typedefs and qualifiers to the type that has a layout.
    fn resolve(&self, mut id: u32) -> Result<(u32, &Type)> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => id = t.size_or_type,
                _ => return Ok((id, t)),
            }
        }
        bail!("BTF type chain too long at id {id}")
    }

    fn struct_id(&self, name: &str) -> Result<u32> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && !t.members.is_empty() && self.name(t.name_off) == name.as_bytes())
            .map(|i| i as u32 + 1)
            .with_context(|| format!("struct {name} not in the kernel's BTF"))
    }

    /// Looks for `member` in the struct/union `id`, descending into
    /// anonymous struct/union members; returns (byte offset, type id).
    fn find(&self, id: u32, member: &str, depth: u32) -> Result<Option<(u32, u32)>> {
        if depth > 8 {
            return Ok(None);
        }
        let (_, t) = self.resolve(id)?;
        for m in &t.members {
            let at = |bits: Option<u32>| bits.filter(|b| b % 8 == 0).map(|b| b / 8);
            if m.name_off != 0 && self.name(m.name_off) == member.as_bytes() {
                let Some(off) = at(m.bit_offset) else { bail!("{member} is a bitfield") };
                return Ok(Some((off, m.type_id)));
            }
            if m.name_off == 0 {
                let (_, inner) = self.resolve(m.type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some((off, ty)) = self.find(m.type_id, member, depth + 1)?
                {
                    let Some(base) = at(m.bit_offset) else { continue };
                    return Ok(Some((base + off, ty)));
                }
            }
        }
        Ok(None)
    }

    /// Byte offset of `path` (members separated by dots, e.g.
    /// `nd_net.net`) in `struct name`, and the size of the last member: 8
    /// for a pointer, the byte size of an int/struct/union/enum.
    pub fn offset_of(&self, name: &str, path: &str) -> Result<(u32, u32)> {
        let mut id = self.struct_id(name)?;
        let mut total = 0;
        let mut last_ty = id;
        for part in path.split('.') {
            let (off, ty) = self.find(id, part, 0)?.with_context(|| format!("struct {name} has no member {path}"))?;
            total += off;
            last_ty = ty;
            id = ty;
        }
        let (_, t) = self.resolve(last_ty)?;
        let size = match t.kind {
            KIND_PTR => 8,
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => t.size_or_type,
            k => bail!("{name}.{path} has BTF kind {k}, not a plain value"),
        };
        Ok((total, size))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A member: (name, type id, bit offset).
    type M<'a> = (&'a str, u32, u32);
    /// A type: (name, kind, size_or_type, members).
    type T<'a> = (&'a str, u32, u32, &'a [M<'a>]);

    /// Builds a BTF blob.
    pub(crate) fn blob(types: &[T]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut add = |s: &str| -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            off
        };
        let mut tsec = Vec::new();
        for (name, kind, sot, members) in types {
            let n = add(name);
            tsec.extend_from_slice(&n.to_le_bytes());
            tsec.extend_from_slice(&((kind << 24) | members.len() as u32).to_le_bytes());
            tsec.extend_from_slice(&sot.to_le_bytes());
            if *kind == KIND_INT {
                tsec.extend_from_slice(&(sot * 8).to_le_bytes());
            }
            for (mname, ty, bits) in members.iter() {
                let m = add(mname);
                tsec.extend_from_slice(&m.to_le_bytes());
                tsec.extend_from_slice(&ty.to_le_bytes());
                tsec.extend_from_slice(&bits.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(tsec.len() as u32).to_le_bytes());
        b.extend_from_slice(&(tsec.len() as u32).to_le_bytes());
        b.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        b.extend_from_slice(&tsec);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn members_inside_anonymous_unions_and_typedefs() {
        // 1 u16 (typedef __u16 -> 2 int), 3 ptr, 4 anon struct {ptr next; union{dev}},
        // 5 anon union {dev}, 6 struct sk_buff.
        let b = blob(&[
            ("__u16", KIND_TYPEDEF, 2, &[]),
            ("unsigned short", KIND_INT, 2, &[]),
            ("", KIND_PTR, 0, &[]),
            ("", KIND_STRUCT, 24, &[("next", 3, 0), ("", 5, 128)]),
            ("", KIND_UNION, 8, &[("dev", 3, 0), ("dev_scratch", 3, 0)]),
            ("sk_buff", KIND_STRUCT, 232, &[("", 4, 0), ("head", 3, 1536), ("network_header", 1, 1440)]),
        ]);
        let btf = Btf::parse(&b).unwrap();
        assert_eq!(btf.offset_of("sk_buff", "dev").unwrap(), (16, 8));
        assert_eq!(btf.offset_of("sk_buff", "head").unwrap(), (192, 8));
        assert_eq!(btf.offset_of("sk_buff", "network_header").unwrap(), (180, 2));
        assert!(btf.offset_of("sk_buff", "nosuch").is_err());
        assert!(btf.offset_of("net_device", "nd_net").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]).is_err());
        let mut b = blob(&[("x", KIND_STRUCT, 4, &[("a", 7, 0)])]);
        let btf = Btf::parse(&b).unwrap();
        assert!(btf.offset_of("x", "a").is_err(), "member type 7 does not exist");
        b.truncate(b.len() - 3);
        assert!(Btf::parse(&b).is_err(), "the string section runs past the end");
    }

    #[test]
    fn the_running_kernel_has_the_fields_icmp_send_reads() {
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let (head, size) = btf.offset_of("sk_buff", "head").unwrap();
        assert_eq!(size, 8);
        assert!(head > 0 && head < 512);
        assert_eq!(btf.offset_of("sk_buff", "network_header").unwrap().1, 2);
        assert_eq!(btf.offset_of("sk_buff", "dev").unwrap().1, 8);
        assert_eq!(btf.offset_of("net_device", "nd_net.net").unwrap().1, 8);
        assert_eq!(btf.offset_of("net", "ns.inum").unwrap().1, 4);
    }
}
