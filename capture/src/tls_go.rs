//! Go's crypto/tls in a Go executable: where `(*Conn).Write` and `(*Conn).Read` begin and
//! where Read returns, as file offsets for uprobes, found without DWARF or a symbol table
//! (stripped binaries have neither): the functions by name from `.gopclntab`, the table
//! the Go runtime itself needs for stack traces, and Read's RET instructions by decoding
//! its machine code (a uretprobe would rewrite the return address on the goroutine's
//! stack, which Go moves and checks, and crashes it).
//!
//! Only the register ABI (Go 1.17 and later, amd64) is read: older binaries pass
//! arguments on the stack, and are reported as not readable, with the reason.

use object::{Object, ObjectSection, ReadCache};
use std::path::Path;

/// What an executable is, for the TLS tracer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoExe {
    /// Not a Go program.
    NotGo,
    /// Go without crypto/tls (it makes no TLS connections of its own).
    NoTls { version: String },
    /// Go whose crypto/tls can be hooked.
    Hookable(GoTls),
    /// Go with crypto/tls that cannot be hooked, and why.
    Unreadable { version: String, why: String },
}

/// Where to hook a Go binary's crypto/tls: file offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTls {
    /// The Go version that built it (`go1.19.8`).
    pub version: String,
    pub write: u64,
    pub read: u64,
    /// Every RET instruction of Read.
    pub read_returns: Vec<u64>,
    /// Read's one call to runtime.memmove, where `bytes.Reader.Read` (inlined) copies the
    /// record's plaintext out (source in RBX, length in RCX): probed there instead of at
    /// the RETs, a call being emulated by the kernel where a RET is single-stepped.
    pub read_copy: Option<u64>,
}

const WRITE: &str = "crypto/tls.(*Conn).Write";
const READ: &str = "crypto/tls.(*Conn).Read";
const MEMMOVE: &str = "runtime.memmove";

/// Reads the executable at `path` (lazily: only its headers and the sections needed).
pub fn inspect(path: &Path) -> Result<GoExe, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cache = ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else { return Ok(GoExe::NotGo) };
    let Some(pcln) = elf.section_by_name(".gopclntab") else { return Ok(GoExe::NotGo) };
    let version = elf.section_by_name(".go.buildinfo").and_then(|s| build_version(&elf, s.data().ok()?)).unwrap_or_default();
    if elf.architecture() != object::Architecture::X86_64 {
        return Ok(GoExe::Unreadable { version, why: format!("{:?}: only amd64's register ABI is read", elf.architecture()) });
    }
    let table = pcln.data().map_err(|e| format!("{}: .gopclntab: {e}", path.display()))?;
    let text = elf.section_by_name(".text").map(|s| s.address()).unwrap_or(0);
    let funcs = match functions(table, text, &[WRITE, READ, MEMMOVE]) {
        Ok(f) => f,
        Err(why) => return Ok(GoExe::Unreadable { version, why }),
    };
    let (Some(w), Some(r)) = (funcs[0], funcs[1]) else { return Ok(GoExe::NoTls { version }) };
    if !regabi(&version) {
        return Ok(GoExe::Unreadable { version, why: "built before Go 1.17 (arguments on the stack): only the register ABI is read".into() });
    }
    let code = read_at(&elf, r.0, r.1 - r.0).ok_or_else(|| format!("{}: {READ} is outside the file's sections", path.display()))?;
    let rets = returns(&code, r.0);
    let wcode = read_at(&elf, w.0, (w.1 - w.0).min(64)).unwrap_or_default();
    if rets.is_empty() {
        return Ok(GoExe::Unreadable { version, why: format!("no RET found in {READ}") });
    }
    let off = |a: u64| file_offset(&elf, a).ok_or_else(|| format!("{}: address {a:#x} is in no section", path.display()));
    let (write, read) = (entry_probe(&wcode, w.0), entry_probe(&code, r.0));
    let copy = funcs[2].and_then(|m| only_call(&code, r.0, m.0));
    Ok(GoExe::Hookable(GoTls {
        version,
        write: off(write)?,
        read: off(read)?,
        read_returns: rets.into_iter().map(off).collect::<Result<_, _>>()?,
        read_copy: copy.map(off).transpose()?,
    }))
}

/// Whether a Go version (`go1.19.8`, `devel …`) passes arguments in registers on amd64.
fn regabi(version: &str) -> bool {
    let Some(v) = version.strip_prefix("go1.") else { return true }; // unknown or devel: new
    v.split(|c: char| !c.is_ascii_digit()).next().and_then(|m| m.parse::<u32>().ok()).is_none_or(|m| m >= 17)
}

/// The Go version in `.go.buildinfo`: inline since Go 1.18, before that through a
/// pointer to a Go string.
fn build_version<'d, R: object::ReadRef<'d>>(elf: &object::File<'d, R>, d: &[u8]) -> Option<String> {
    if d.len() < 32 || &d[..14] != b"\xff Go buildinf:" {
        return None;
    }
    let (ptr, flags) = (d[14] as usize, d[15]);
    if flags & 2 != 0 {
        let (len, n) = uvarint(&d[32..])?;
        return String::from_utf8(d.get(32 + n..32 + n + len as usize)?.to_vec()).ok();
    }
    if ptr != 8 || flags & 1 != 0 {
        return None; // 32-bit or big-endian: not read here
    }
    let word = |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let hdr = read_at(elf, word(d, 16)?, 16)?;
    let s = read_at(elf, word(&hdr, 0)?, word(&hdr, 8)?.min(64))?;
    String::from_utf8(s).ok()
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The bytes at virtual address `addr`, from the section holding them.
fn read_at<'d, R: object::ReadRef<'d>>(elf: &object::File<'d, R>, addr: u64, len: u64) -> Option<Vec<u8>> {
    elf.sections().find_map(|s| s.data_range(addr, len).ok().flatten().map(<[u8]>::to_vec))
}

/// A virtual address as an offset in the file, as uprobes want it.
fn file_offset<'d, R: object::ReadRef<'d>>(elf: &object::File<'d, R>, addr: u64) -> Option<u64> {
    elf.sections().find_map(|s| {
        let (off, size) = s.file_range()?;
        (addr >= s.address() && addr < s.address() + size).then(|| addr - s.address() + off)
    })
}

/// `[start, end)` of each named function, from the pcln table (Go 1.16 and later
/// formats; `text` is the text section's address, for tables that leave theirs 0).
pub fn functions(t: &[u8], text: u64, names: &[&str]) -> Result<Vec<Option<(u64, u64)>>, String> {
    let u32at = |at: usize| t.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let magic = u32at(0).ok_or(".gopclntab is too short")?;
    let ptr = *t.get(7).ok_or(".gopclntab is too short")? as usize;
    if ptr != 8 || t[4] != 0 || t[5] != 0 {
        return Err(format!(".gopclntab: pointer size {ptr}: not a 64-bit binary"));
    }
    let word = |i: usize| t.get(8 + i * 8..16 + i * 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    // 0xfffffff0: Go 1.18 and 1.19; 0xfffffff1: 1.20 and later; 0xfffffffa: 1.16, 1.17
    let (nfunc, text_start, nameoff, pclnoff, new) = match magic {
        0xffff_fff0 | 0xffff_fff1 => (word(0), word(2).map(|v| v as u64), word(3), word(7), true),
        0xffff_fffa => (word(0), Some(0), word(2), word(6), false),
        m => return Err(format!(".gopclntab: unknown format {m:#x} (Go older than 1.16?)")),
    };
    let (Some(nfunc), Some(text_start), Some(nameoff), Some(pclnoff)) = (nfunc, text_start, nameoff, pclnoff) else {
        return Err(".gopclntab: header cut short".into());
    };
    let base = if text_start == 0 { text } else { text_start };
    let bad = || ".gopclntab: a function table entry outside the table".to_string();
    // functab: nfunc (entry, funcoff) pairs and a last entry (the end of the text)
    let entry = |i: usize| -> Option<(u64, usize)> {
        if new {
            let at = pclnoff + i * 8;
            Some((base + u64::from(u32at(at)?), u32at(at + 4)? as usize))
        } else {
            let at = pclnoff + i * 16;
            let w = |a: usize| t.get(a..a + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
            Some((w(at)?, w(at + 8)? as usize))
        }
    };
    let mut out = vec![None; names.len()];
    for i in 0..nfunc {
        let (start, funcoff) = entry(i).ok_or_else(bad)?;
        // _func: entryOff u32 (an entry uintptr before 1.18), then nameOff i32
        let name_at = pclnoff + funcoff + if new { 4 } else { 8 };
        let Some(n) = u32at(name_at) else { return Err(bad()) };
        let s = nameoff + n as usize;
        let Some(name) = t.get(s..).and_then(|r| r.split(|&b| b == 0).next()) else { continue };
        if let Some(k) = names.iter().position(|w| w.as_bytes() == name) {
            let end = entry(i + 1).ok_or_else(bad)?.0;
            out[k] = Some((start, end));
            if out.iter().all(Option::is_some) {
                break;
            }
        }
    }
    Ok(out)
}

/// Where to probe a function's entry: its stack check's conditional jump when it starts
/// with one (`cmp rsp, [r14+16]; jbe morestack`, or `lea r12, [rsp-N]; cmp r12, ...`),
/// else its first instruction. The kernel emulates a jump, where it must single-step most
/// other instructions (a debug trap, costly in a virtual machine); the argument
/// registers (RAX, RBX, RCX) and the goroutine (R14) are as at the entry there. A call
/// that grows its stack passes the jump twice, which only writes the same state again.
pub fn entry_probe(code: &[u8], addr: u64) -> u64 {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic, OpKind, Register};
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    for _ in 0..3 {
        if !d.can_decode() {
            break;
        }
        let i = d.decode();
        match i.mnemonic() {
            Mnemonic::Cmp => {}
            // big frames: the check is on r12, which holds nothing of the caller's
            Mnemonic::Lea if i.op0_kind() == OpKind::Register && i.op0_register() == Register::R12 => {}
            _ if i.flow_control() == FlowControl::ConditionalBranch => return i.ip(),
            _ => break,
        }
    }
    addr
}

/// The address of the one direct call to `target` in `code` (which starts at `addr`);
/// `None` when there is none or more than one.
pub fn only_call(code: &[u8], addr: u64, target: u64) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut found = None;
    while d.can_decode() {
        let i = d.decode();
        if i.mnemonic() == Mnemonic::Call && i.near_branch_target() == target {
            if found.is_some() {
                return None;
            }
            found = Some(i.ip());
        }
    }
    found
}

/// The addresses of the RET instructions in `code` (which starts at `addr`).
pub fn returns(code: &[u8], addr: u64) -> Vec<u64> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let i = d.decode();
        if i.mnemonic() == Mnemonic::Ret {
            out.push(i.ip());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ret_instructions_are_found_and_not_bytes_that_look_like_one() {
        // mov eax, 0xc3 (a 0xc3 byte inside an instruction); ret; xor eax, eax; ret
        let code = [0xb8, 0xc3, 0, 0, 0, 0xc3, 0x31, 0xc0, 0xc3];
        assert_eq!(returns(&code, 0x1000), vec![0x1005, 0x1008]);
    }

    #[test]
    fn the_entry_is_probed_at_the_stack_checks_jump() {
        // cmp rsp, [r14+0x10]; jbe +0x3c2; sub rsp, 0x68 (Go 1.19's (*Conn).Read)
        let code = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xc2, 0x03, 0x00, 0x00, 0x48, 0x83, 0xec, 0x68];
        assert_eq!(entry_probe(&code, 0x5a9620), 0x5a9624);
        // lea r12, [rsp-0x98]; cmp r12, [r14+0x10]; jbe (a large frame)
        let big = [0x4c, 0x8d, 0xa4, 0x24, 0x68, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x10, 0x00, 0x00, 0x00];
        assert_eq!(entry_probe(&big, 0x1000), 0x100c);
        // anything else: the first instruction (sub rsp, 0x18; mov rax, fs:0x28)
        let c = [0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0];
        assert_eq!(entry_probe(&c, 0x2000), 0x2000);
        // a mov into an argument register before a jump: not moved past it
        let m = [0x48, 0x89, 0xd8, 0x74, 0x02];
        assert_eq!(entry_probe(&m, 0x3000), 0x3000);
    }

    #[test]
    fn the_one_call_to_a_function_is_found_and_two_are_refused() {
        // call +5 (to 0x100a); nop; call -0xb (to 0x1000)
        let code = [0xe8, 0x05, 0, 0, 0, 0x90, 0xe8, 0xf5, 0xff, 0xff, 0xff];
        assert_eq!(only_call(&code, 0x1000, 0x100a), Some(0x1000));
        assert_eq!(only_call(&code, 0x1000, 0x1000), Some(0x1006));
        let twice = [0xe8, 0x05, 0, 0, 0, 0xe8, 0x00, 0, 0, 0];
        assert_eq!(only_call(&twice, 0x1000, 0x100a), None);
    }

    #[test]
    fn the_register_abi_from_go_1_17() {
        assert!(regabi("go1.19.8") && regabi("go1.17") && regabi("go1.22rc1") && regabi("devel +abc"));
        assert!(!regabi("go1.16.15") && !regabi("go1.9"));
    }

    #[test]
    fn a_table_of_an_unknown_format_is_an_error_not_a_guess() {
        let mut t = vec![0u8; 128];
        t[..4].copy_from_slice(&0xffff_fffbu32.to_le_bytes());
        t[7] = 8;
        assert!(functions(&t, 0, &[READ]).unwrap_err().contains("unknown format"));
        assert!(functions(&t[..3], 0, &[READ]).is_err());
    }

    #[test]
    fn this_machines_go_binaries_are_read() {
        // Debian's Go: the `go` command makes TLS connections (module downloads), the
        // compiler none; both read from their pcln tables alone
        let dir = Path::new("/usr/lib/go-1.19");
        assert!(dir.exists(), "{} is missing: `bash scripts/setup.sh` installs golang-go", dir.display());
        match inspect(&dir.join("pkg/tool/linux_amd64/compile")).unwrap() {
            GoExe::NoTls { version } => assert!(version.starts_with("go1.19"), "{version}"),
            other => panic!("the Go compiler has no crypto/tls: {other:?}"),
        }
        let GoExe::Hookable(t) = inspect(&dir.join("bin/go")).unwrap() else { panic!("`go` uses crypto/tls") };
        assert!(t.version.starts_with("go1.19") && t.write != t.read && !t.read_returns.is_empty(), "{t:?}");
        assert!(t.read_returns.iter().all(|r| *r > t.read), "{t:?}");
        assert!(t.read_copy.is_some_and(|c| c > t.read), "Go 1.19 inlines bytes.Reader.Read into (*Conn).Read: {t:?}");
        assert_eq!(inspect(Path::new("/bin/sh")).unwrap(), GoExe::NotGo);
    }
}
