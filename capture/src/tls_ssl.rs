//! Where OpenSSL is probed without a single-step.
//!
//! A uprobe traps on the probed instruction, then runs it: the kernel emulates a jump, a
//! call or a `push`, and single-steps anything else out of line (a debug trap, which costs
//! more than all the rest of the probe in a virtual machine). `SSL_read` and `SSL_write`
//! start with `sub rsp, N`, which is single-stepped. Both they and their `_ex` forms are
//! thin wrappers around one internal function each (`ssl_read_internal`,
//! `ssl_write_internal`), which starts by pushing registers: probing those, entry and
//! return, costs a trap and no step.
//!
//! The internal functions have no symbols. They are found as the one target that the
//! public wrappers call; they are used only when both wrappers of a direction call the
//! same function, the count pointer's argument is known from the wrapper's code (4th
//! in OpenSSL 1.1.1 to 3.1, 5th after 3.2's `flags`), and the function starts with a
//! `push`. Otherwise the public functions are probed as before.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use object::{Object, ObjectSection, ObjectSymbol};
use std::collections::HashMap;
use std::path::Path;

/// The internal functions, as offsets in the file, and which argument of the write
/// function is its `size_t *written` (4 or 5; the read function's is always the 4th).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SslInner {
    pub read: u64,
    pub write: u64,
    pub write_count_arg: u8,
}

/// How a wrapper calls the function it wraps: the target of its first direct call, and
/// the argument that carries the wrapper's own 4th argument, its count pointer (4 when
/// RCX passes through, 5 when `mov r8, rcx` moves it); `count_arg` is `None` when
/// anything else before the call writes RCX or R8 (`SSL_write` passes a pointer to its
/// own stack). `None` when a jump or a return comes before any call (a tail call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrapperCall {
    pub target: u64,
    pub count_arg: Option<u8>,
}

pub fn wrapper_call(code: &[u8], addr: u64) -> Option<WrapperCall> {
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut count_arg = Some(4);
    while d.can_decode() {
        let i = d.decode();
        match i.mnemonic() {
            Mnemonic::Call if i.op0_kind() == OpKind::NearBranch64 => return Some(WrapperCall { target: i.near_branch_target(), count_arg }),
            Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Ret => return None,
            _ => {}
        }
        let writes = |r: Register| i.op_count() > 0 && i.op0_kind() == OpKind::Register && i.op0_register().full_register() == r;
        if writes(Register::R8) {
            let moves_rcx = i.mnemonic() == Mnemonic::Mov && i.op1_kind() == OpKind::Register && i.op1_register() == Register::RCX;
            count_arg = if moves_rcx && count_arg == Some(4) { Some(5) } else { None };
        } else if writes(Register::RCX) && count_arg == Some(4) {
            count_arg = None;
        }
    }
    None
}

/// Whether the code starts with an instruction the kernel emulates at a uprobe: `push`
/// of a 64-bit register.
pub fn starts_with_push(code: &[u8], addr: u64) -> bool {
    let mut d = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    if !d.can_decode() {
        return false;
    }
    let i = d.decode();
    i.mnemonic() == Mnemonic::Push && i.op0_kind() == OpKind::Register && i.op0_register().is_gpr64()
}

/// The internal read and write functions of the OpenSSL in the file, when they can be
/// probed without a single-step (see the module's comment).
pub fn inner(target: &Path) -> Option<SslInner> {
    let file = std::fs::File::open(target).ok()?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    if elf.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let mut syms: HashMap<&str, (u64, u64)> = HashMap::new();
    for s in elf.symbols().chain(elf.dynamic_symbols()) {
        if s.is_undefined() || s.address() == 0 {
            continue;
        }
        if let Ok(n @ ("SSL_read" | "SSL_read_ex" | "SSL_write" | "SSL_write_ex")) = s.name() {
            syms.insert(n, (s.address(), s.size()));
        }
    }
    let code = |addr: u64, len: u64| elf.sections().find_map(|s| s.data_range(addr, len).ok().flatten().map(<[u8]>::to_vec));
    let call = |name: &str| -> Option<WrapperCall> {
        let (addr, size) = *syms.get(name)?;
        let len = if size == 0 { 64 } else { size.min(256) };
        wrapper_call(&code(addr, len)?, addr)
    };
    let (r, rx, w, wx) = (call("SSL_read")?, call("SSL_read_ex")?, call("SSL_write")?, call("SSL_write_ex")?);
    // both wrappers of a direction call one function; the _ex one passes its pointer on
    if r.target != rx.target || w.target != wx.target || rx.count_arg != Some(4) || r.target == w.target {
        return None;
    }
    let write_count_arg = wx.count_arg?;
    for t in [r.target, w.target] {
        if !starts_with_push(&code(t, 16)?, t) {
            return None;
        }
    }
    let offset = |addr: u64| {
        elf.sections().find_map(|s| {
            let (off, size) = s.file_range()?;
            (addr >= s.address() && addr < s.address() + size).then(|| addr - s.address() + off)
        })
    };
    Some(SslInner { read: offset(r.target)?, write: offset(w.target)?, write_count_arg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapped_call_and_its_count_argument_are_read() {
        // OpenSSL 3.0's SSL_write_ex: sub rsp, 8; call ssl_write_internal; ...
        let ex = [0x48, 0x83, 0xec, 0x08, 0xe8, 0x87, 0xfb, 0xff, 0xff, 0x31, 0xd2];
        assert_eq!(wrapper_call(&ex, 0x35a10), Some(WrapperCall { target: 0x355a0, count_arg: Some(4) }));
        // OpenSSL 3.0's SSL_write: the count pointer is its own stack (mov rcx, rsp)
        let w = [
            0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0, 0x48, 0x89, 0x44, 0x24, 0x08, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f, 0x48, 0x89, 0xe1, 0x48,
            0x63, 0xd2, 0xe8, 0xfd, 0xfb, 0xff, 0xff,
        ];
        assert_eq!(wrapper_call(&w, 0x35980), Some(WrapperCall { target: 0x355a0, count_arg: None }), "SSL_write passes its own pointer");
        // 3.2's form: mov r8, rcx; xor ecx, ecx; call
        let ex2 = [0x49, 0x89, 0xc8, 0x31, 0xc9, 0xe8, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(wrapper_call(&ex2, 0x1000), Some(WrapperCall { target: 0x110a, count_arg: Some(5) }));
        // a tail call is not a wrapper this knows
        assert_eq!(wrapper_call(&[0xe9, 0, 1, 0, 0], 0x1000), None);
        assert!(starts_with_push(&[0x41, 0x54, 0x55], 0));
        assert!(!starts_with_push(&[0x48, 0x83, 0xec, 0x18], 0));
    }

    #[test]
    fn debians_libssl_is_probed_at_its_internal_functions() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert!(lib.exists(), "{} is missing (bash scripts/setup.sh installs libssl3)", lib.display());
        let i = inner(lib).expect("SSL_read's and SSL_write's internal functions are found in Debian's libssl.so.3");
        assert_ne!(i.read, i.write);
        assert_eq!(i.write_count_arg, 4, "OpenSSL 3.0's ssl_write_internal takes the count pointer 4th");
    }
}
