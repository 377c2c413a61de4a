//! Redis (RESP2 and RESP3, inline commands): `wire` reads values, `state` pairs commands
//! with replies. Found by content: a command array whose first element names a command;
//! a reply first (a connection joined mid-way) on Redis's ports.

pub mod state;
pub mod wire;

use crate::flow::Dir;
use crate::proto::{ProbeCx, Probed, TcpProto};
pub use state::Redis;
use wire::{Incomplete, Resp};

pub const PROTO: TcpProto = TcpProto { name: "redis", short: "redis", probe: Some(probe), late_probe: Some(probe_reply), upgrade: None };

const PORTS: &[u16] = &[6379, 6380, 16379, 26379];

/// A command array (`*N\r\n$M\r\nNAME`), or an inline command on Redis's ports.
fn probe(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    if data.first() == Some(&b'*') {
        return command_start(data).map_or(Probed::NoMatch, |ok| if ok { Probed::Match(Box::new(Redis::new(dir))) } else { Probed::NeedMore });
    }
    let receiver = if dir == Dir::A { pcx.ports.1 } else { pcx.ports.0 };
    if PORTS.contains(&receiver) {
        if let Ok((words, _)) = wire::inline(data) {
            if words.first().is_some_and(|w| wire::is_command_name(w) && w.iter().all(u8::is_ascii_alphabetic)) && data.len() < 4096 {
                return Probed::Match(Box::new(Redis::new(dir)));
            }
        }
    }
    Probed::NoMatch
}

/// `Some(true)`: the start of a command array; `Some(false)`: too short to say.
fn command_start(data: &[u8]) -> Option<bool> {
    let mut lines = data.split(|c| *c == b'\n');
    let mut next = |what: u8| -> Option<Option<&[u8]>> {
        match lines.next() {
            Some(l) if l.ends_with(b"\r") => {
                let l = &l[..l.len() - 1];
                Some(Some(l).filter(|l| what == 0 || l.first() == Some(&what)))
            }
            // the last piece, cut short
            Some(l) if l.len() < 32 => Some(None),
            _ => None,
        }
    };
    let count = next(b'*')?;
    let Some(count) = count else { return (data.len() < 32).then_some(false) };
    let n: usize = std::str::from_utf8(&count[1..]).ok()?.parse().ok()?;
    if n == 0 || n > 1 << 20 {
        return None;
    }
    let Some(len) = next(b'$')? else { return (data.len() < 32).then_some(false) };
    let len: usize = std::str::from_utf8(&len[1..]).ok()?.parse().ok()?;
    match next(0)? {
        Some(name) if name.len() == len && wire::is_command_name(name) => Some(true),
        Some(_) => None,
        None => (data.len() < 64).then_some(false),
    }
}

/// A connection joined mid-way whose first bytes are the server's: a whole reply, on
/// Redis's ports only (a lone `+OK` says little).
fn probe_reply(pcx: &ProbeCx<'_>, dir: Dir, data: &[u8]) -> Probed {
    let sender = if dir == Dir::A { pcx.ports.0 } else { pcx.ports.1 };
    if !PORTS.contains(&sender) || !matches!(data.first(), Some(b'+' | b'-' | b':' | b'$' | b'*' | b'%' | b'>' | b'_')) {
        return Probed::NoMatch;
    }
    match wire::parse(data) {
        Ok((Resp::Array(_), _)) if command_start(data) == Some(true) => Probed::NoMatch,
        Ok(_) => Probed::Match(Box::new(Redis::new(dir.flip()))),
        Err(Incomplete::More(_)) if data.len() < 4096 => Probed::NeedMore,
        Err(_) => Probed::NoMatch,
    }
}

#[cfg(test)]
mod tests;
