//! HPACK's Huffman code (RFC 7541 Appendix B), decoded fast: a 9-bit lookup table for the
//! common short codes, and the canonical-code walk for the long ones. Malformed input (EOS
//! inside a string, padding longer than 7 bits or not all ones, a code cut short) is an
//! error, never a panic.

use std::sync::OnceLock;

/// (code, length in bits) of each symbol; 256 is EOS.
#[rustfmt::skip]
pub const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28), (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12), (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8), (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7), (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7), (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20), (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23), (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21), (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27), (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21), (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27), (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    (0x3fffffff, 30),];

const FAST_BITS: u32 = 9;

/// The string is not valid HPACK Huffman code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadHuffman;

struct Tables {
    /// By length: the first code, how many codes, and where their symbols start.
    first: [u32; 31],
    count: [u32; 31],
    offset: [usize; 31],
    /// Symbols sorted by (length, symbol): the canonical order.
    symbols: [u16; 257],
    /// The next FAST_BITS bits → (symbol, length) when the code is that short.
    fast: [(u8, u8); 1 << FAST_BITS],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables { first: [0; 31], count: [0; 31], offset: [0; 31], symbols: [0; 257], fast: [(0, 0); 1 << FAST_BITS] };
        let mut order: Vec<usize> = (0..257).collect();
        order.sort_by_key(|&s| (CODES[s].1, s));
        for (k, &s) in order.iter().enumerate() {
            let (code, len) = CODES[s];
            let l = len as usize;
            if t.count[l] == 0 {
                t.first[l] = code;
                t.offset[l] = k;
            }
            t.count[l] += 1;
            t.symbols[k] = s as u16;
            if (len as u32) <= FAST_BITS {
                let shift = FAST_BITS - len as u32;
                for fill in 0..(1u32 << shift) {
                    t.fast[((code << shift) | fill) as usize] = (s as u8, len);
                }
            }
        }
        t
    })
}

fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Appends the decoding of `src` to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), BadHuffman> {
    let t = tables();
    let (mut acc, mut n, mut i) = (0u64, 0u32, 0usize);
    out.reserve(src.len() * 8 / 5);
    loop {
        while n <= 56 && i < src.len() {
            acc = (acc << 8) | src[i] as u64;
            n += 8;
            i += 1;
        }
        if n == 0 {
            return Ok(());
        }
        if n >= FAST_BITS {
            let (sym, len) = t.fast[((acc >> (n - FAST_BITS)) & mask(FAST_BITS)) as usize];
            if len != 0 {
                out.push(sym);
                n -= len as u32;
                acc &= mask(n);
                continue;
            }
        }
        let mut matched = false;
        for l in 5..=n.min(30) {
            let (first, count) = (t.first[l as usize], t.count[l as usize]);
            if count == 0 {
                continue;
            }
            let code = ((acc >> (n - l)) & mask(l)) as u32;
            if code >= first && code - first < count {
                let sym = t.symbols[t.offset[l as usize] + (code - first) as usize];
                if sym == 256 {
                    return Err(BadHuffman);
                }
                out.push(sym as u8);
                n -= l;
                acc &= mask(n);
                matched = true;
                break;
            }
        }
        if !matched {
            // no code in what is left: it must be the end, padded with at most 7 ones
            return if i == src.len() && n <= 7 && acc == mask(n) { Ok(()) } else { Err(BadHuffman) };
        }
    }
}

#[cfg(test)]
pub fn encode(src: &[u8]) -> Vec<u8> {
    let (mut acc, mut n, mut out) = (0u64, 0u32, Vec::new());
    for &b in src {
        let (code, len) = CODES[b as usize];
        acc = (acc << len) | code as u64;
        n += len as u32;
        while n >= 8 {
            out.push((acc >> (n - 8)) as u8);
            n -= 8;
            acc &= mask(n);
        }
    }
    if n > 0 {
        out.push(((acc << (8 - n)) | mask(8 - n)) as u8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loona(b: &[u8]) -> Result<Vec<u8>, BadHuffman> {
        loona_hpack::huffman::HuffmanDecoder::new().decode(b).map_err(|_| BadHuffman)
    }

    #[test]
    fn rfc7541_examples() {
        // C.4.1: "www.example.com"
        let b = [0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut out = Vec::new();
        decode(&b, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        assert_eq!(encode(b"www.example.com"), b);
    }

    #[test]
    fn bad_padding_and_eos() {
        let mut out = Vec::new();
        assert!(decode(&[0xff, 0xff, 0xff, 0xff], &mut out).is_err(), "EOS");
        assert!(decode(&[0x00], &mut out).is_err(), "'0' then padding of zeros");
        out.clear();
        assert!(decode(&[0x07], &mut out).is_ok(), "'0' then padding of ones");
        assert_eq!(out, b"0");
        assert!(decode(&[0x07, 0xff], &mut out).is_err(), "padding longer than 7 bits");
    }

    proptest! {
        // the same as loona-hpack's decoder, on every input: encoded strings and noise
        #[test]
        fn agrees_with_loona(s in proptest::collection::vec(any::<u8>(), 0..64), noise in proptest::collection::vec(any::<u8>(), 0..16)) {
            let e = encode(&s);
            let mut out = Vec::new();
            prop_assert!(decode(&e, &mut out).is_ok());
            prop_assert_eq!(&out, &s);
            let mut ours = Vec::new();
            let r = decode(&noise, &mut ours).map(|_| ours);
            prop_assert_eq!(r, loona(&noise));
        }
    }
}
