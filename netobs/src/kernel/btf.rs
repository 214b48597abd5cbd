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
    /// Struct/union members; a function prototype's parameters (no offset).
    members: Vec<Member>,
    /// Enumerators of an enum: (name offset, value).
    values: Vec<(u32, u64)>,
}

/// What a tracepoint argument is, as far as netobs needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// A pointer to `struct NAME`.
    StructPtr(String),
    /// A value of `enum NAME`.
    Enum(String),
    /// Anything else (`void *`, integers, ...).
    Other,
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
            let mut values = Vec::new();
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
                KIND_ENUM => {
                    for i in 0..vlen {
                        let e = p + i * 8;
                        // Signedness is in kind_flag; the numbers netobs
                        // compares with are the kernel's u32 view.
                        values.push((u32_at(tsec, e)?, u64::from(u32_at(tsec, e + 4)?)));
                    }
                    vlen * 8
                }
                KIND_ENUM64 => {
                    for i in 0..vlen {
                        let e = p + i * 12;
                        let v = u64::from(u32_at(tsec, e + 4)?) | (u64::from(u32_at(tsec, e + 8)?) << 32);
                        values.push((u32_at(tsec, e)?, v));
                    }
                    vlen * 12
                }
                KIND_FUNC_PROTO => {
                    for i in 0..vlen {
                        let a = p + i * 8;
                        members.push(Member {
                            name_off: u32_at(tsec, a)?,
                            type_id: u32_at(tsec, a + 4)?,
                            bit_offset: None,
                        });
                    }
                    vlen * 8
                }
                KIND_DATASEC => vlen * 12,
                0..=19 => 0,
                k => bail!("unknown BTF kind {k}"),
            };
            p += extra;
            types.push(Type { name_off, kind, size_or_type, members, values });
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

    /// The enumerators of `enum name` (e.g. `skb_drop_reason`), as (name,
    /// value) in declaration order.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let t = self
            .types
            .iter()
            .find(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64) && self.name(t.name_off) == name.as_bytes())
            .with_context(|| format!("enum {name} not in the kernel's BTF"))?;
        Ok(t.values.iter().map(|&(n, v)| (String::from_utf8_lossy(self.name(n)).into_owned(), v)).collect())
    }

    /// The argument types of raw tracepoint `tp` (what a raw tracepoint
    /// program finds in `args[0..]`), from the kernel's `btf_trace_<tp>`
    /// typedef: a pointer to a prototype whose first parameter is the
    /// tracepoint's private `void *` (not passed to the program).
    pub fn tracepoint_args(&self, tp: &str) -> Result<Vec<ArgType>> {
        let want = format!("btf_trace_{tp}");
        let i = self
            .types
            .iter()
            .position(|t| t.kind == KIND_TYPEDEF && self.name(t.name_off) == want.as_bytes())
            .with_context(|| format!("tracepoint {tp} not in the kernel's BTF (no {want})"))?;
        let (_, ptr) = self.resolve(i as u32 + 1)?;
        if ptr.kind != KIND_PTR {
            bail!("{want} is not a function pointer");
        }
        let (_, proto) = self.resolve(ptr.size_or_type)?;
        if proto.kind != KIND_FUNC_PROTO || proto.members.is_empty() {
            bail!("{want} is not a function pointer");
        }
        proto.members[1..].iter().map(|m| self.arg_type(m.type_id)).collect()
    }

    fn arg_type(&self, id: u32) -> Result<ArgType> {
        let (_, t) = self.resolve(id)?;
        Ok(match t.kind {
            KIND_ENUM | KIND_ENUM64 => ArgType::Enum(String::from_utf8_lossy(self.name(t.name_off)).into_owned()),
            KIND_PTR if t.size_or_type != 0 => {
                let (_, to) = self.resolve(t.size_or_type)?;
                match to.kind {
                    KIND_STRUCT => ArgType::StructPtr(String::from_utf8_lossy(self.name(to.name_off)).into_owned()),
                    _ => ArgType::Other,
                }
            }
            _ => ArgType::Other,
        })
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
                // Enumerators (name, value) and parameters (name, type)
                // are 8 bytes.
                if !matches!(*kind, KIND_ENUM | KIND_FUNC_PROTO) {
                    tsec.extend_from_slice(&bits.to_le_bytes());
                }
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
    fn enum_values_and_tracepoint_arguments() {
        // 1 enum skb_drop_reason, 2 struct sk_buff, 3 ptr -> 2, 4 void ptr,
        // 5 proto (void *, sk_buff *, void *, reason), 6 ptr -> 5,
        // 7 typedef btf_trace_kfree_skb -> 6.
        let b = blob(&[
            (
                "skb_drop_reason",
                KIND_ENUM,
                4,
                &[("SKB_NOT_DROPPED_YET", 0, 0), ("SKB_CONSUMED", 1, 0), ("SKB_DROP_REASON_NETFILTER_DROP", 11, 0)],
            ),
            ("sk_buff", KIND_STRUCT, 232, &[("len", 1, 0)]),
            ("", KIND_PTR, 2, &[]),
            ("", KIND_PTR, 0, &[]),
            ("", KIND_FUNC_PROTO, 0, &[("", 4, 0), ("", 3, 0), ("", 4, 0), ("", 1, 0)]),
            ("", KIND_PTR, 5, &[]),
            ("btf_trace_kfree_skb", KIND_TYPEDEF, 6, &[]),
        ]);
        let btf = Btf::parse(&b).unwrap();
        let v = btf.enum_values("skb_drop_reason").unwrap();
        assert_eq!(v[2], ("SKB_DROP_REASON_NETFILTER_DROP".to_string(), 11));
        assert_eq!(v.len(), 3);
        assert!(btf.enum_values("nosuch").is_err());
        let args = btf.tracepoint_args("kfree_skb").unwrap();
        assert_eq!(
            args,
            vec![ArgType::StructPtr("sk_buff".into()), ArgType::Other, ArgType::Enum("skb_drop_reason".into())]
        );
        assert!(btf.tracepoint_args("nosuch").is_err());
    }

    #[test]
    fn the_running_kernel_names_its_drop_reasons() {
        let Ok(btf) = Btf::from_sys_fs() else { return };
        let v = btf.enum_values("skb_drop_reason").unwrap();
        assert!(v.iter().any(|(n, _)| n == "SKB_DROP_REASON_NETFILTER_DROP"), "{v:?}");
        let args = btf.tracepoint_args("kfree_skb").unwrap();
        assert_eq!(args[0], ArgType::StructPtr("sk_buff".into()));
        assert!(args.contains(&ArgType::Enum("skb_drop_reason".into())), "{args:?}");
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
