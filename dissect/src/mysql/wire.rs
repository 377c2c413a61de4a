//! MySQL's client/server protocol (MariaDB's too): packets, their length-encoded values,
//! and the messages kshark reads: the greeting, the login, OK, ERR and column definitions.

/// The longest payload of one packet; a payload this long continues in the next.
pub const MAX_PAYLOAD: usize = 0xff_ffff;

pub mod cap {
    pub const CONNECT_WITH_DB: u32 = 0x8;
    pub const COMPRESS: u32 = 0x20;
    pub const PROTOCOL_41: u32 = 0x200;
    pub const SSL: u32 = 0x800;
    pub const SECURE_CONNECTION: u32 = 0x8000;
    pub const PLUGIN_AUTH: u32 = 0x8_0000;
    pub const CONNECT_ATTRS: u32 = 0x10_0000;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 0x20_0000;
    pub const DEPRECATE_EOF: u32 = 0x100_0000;
    pub const QUERY_ATTRIBUTES: u32 = 0x800_0000;
}

/// A packet's header: payload length and sequence id.
pub fn header(b: &[u8]) -> Option<(usize, u8)> {
    let h = b.get(..4)?;
    Some((u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize, h[3]))
}

/// The protocol's command names, by their byte.
pub fn command_name(c: u8) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "COM_SLEEP", "COM_QUIT", "COM_INIT_DB", "COM_QUERY", "COM_FIELD_LIST", "COM_CREATE_DB", "COM_DROP_DB", "COM_REFRESH", "COM_SHUTDOWN",
        "COM_STATISTICS", "COM_PROCESS_INFO", "COM_CONNECT", "COM_PROCESS_KILL", "COM_DEBUG", "COM_PING", "COM_TIME", "COM_DELAYED_INSERT",
        "COM_CHANGE_USER", "COM_BINLOG_DUMP", "COM_TABLE_DUMP", "COM_CONNECT_OUT", "COM_REGISTER_SLAVE", "COM_STMT_PREPARE", "COM_STMT_EXECUTE",
        "COM_STMT_SEND_LONG_DATA", "COM_STMT_CLOSE", "COM_STMT_RESET", "COM_SET_OPTION", "COM_STMT_FETCH", "COM_DAEMON", "COM_BINLOG_DUMP_GTID",
        "COM_RESET_CONNECTION",
    ];
    NAMES.get(c as usize).copied()
}

/// Reads a payload's fields.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    pub fn u16(&mut self) -> Option<u16> {
        let v = self.bytes(2)?;
        Some(u16::from_le_bytes([v[0], v[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        let v = self.bytes(4)?;
        Some(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(v)
    }

    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.at..)?;
        let end = memchr::memchr(0, rest)?;
        self.at += end + 1;
        Some(&rest[..end])
    }

    /// A length-encoded integer; `None` for the NULL marker (0xfb) or when cut short.
    pub fn lenenc(&mut self) -> Option<u64> {
        Some(match self.u8()? {
            n @ 0..=0xfa => n as u64,
            0xfc => self.u16()? as u64,
            0xfd => {
                let v = self.bytes(3)?;
                u32::from_le_bytes([v[0], v[1], v[2], 0]) as u64
            }
            0xfe => {
                let v = self.bytes(8)?;
                u64::from_le_bytes(v.try_into().ok()?)
            }
            _ => return None,
        })
    }

    pub fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.bytes(usize::try_from(n).ok()?)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.b.get(self.at..).unwrap_or(&[])
    }
}

/// The server's greeting (HandshakeV10).
#[derive(Debug, PartialEq)]
pub struct Greeting<'a> {
    pub version: &'a [u8],
    pub connection_id: u32,
    pub capabilities: u32,
    pub auth_plugin: Option<&'a [u8]>,
}

pub fn greeting(p: &[u8]) -> Option<Greeting<'_>> {
    let mut r = Reader::new(p);
    if r.u8()? != 10 {
        return None;
    }
    let version = r.cstr()?;
    let connection_id = r.u32()?;
    r.bytes(9)?;
    let low = r.u16()? as u32;
    let (mut capabilities, mut auth_plugin) = (low, None);
    if r.u8().is_some() {
        r.u16()?;
        let high = r.u16()? as u32;
        capabilities |= high << 16;
        let auth_len = r.u8()? as usize;
        r.bytes(10)?;
        if capabilities & cap::SECURE_CONNECTION != 0 {
            r.bytes(13usize.max(auth_len.saturating_sub(8)))?;
        }
        if capabilities & cap::PLUGIN_AUTH != 0 {
            auth_plugin = r.cstr().or_else(|| Some(r.rest()));
        }
    }
    Some(Greeting { version, connection_id, capabilities, auth_plugin })
}

/// The client's answer to the greeting (HandshakeResponse41), or its SSLRequest (the same
/// packet cut after the filler, 32 bytes).
#[derive(Debug, PartialEq)]
pub struct Login<'a> {
    pub capabilities: u32,
    pub user: Option<&'a [u8]>,
    pub database: Option<&'a [u8]>,
    pub auth_plugin: Option<&'a [u8]>,
    /// Only the SSLRequest: TLS follows.
    pub ssl_only: bool,
}

pub fn login(p: &[u8]) -> Option<Login<'_>> {
    let mut r = Reader::new(p);
    let capabilities = r.u32()?;
    if capabilities & cap::PROTOCOL_41 == 0 {
        // the old HandshakeResponse320: 2 bytes of flags, 3 of max packet, then the user
        let mut r = Reader::new(p);
        let caps = r.u16()? as u32;
        r.bytes(3)?;
        return Some(Login { capabilities: caps, user: r.cstr(), database: None, auth_plugin: None, ssl_only: false });
    }
    r.u32()?;
    r.u8()?;
    r.bytes(23)?;
    if r.rest().is_empty() {
        return Some(Login { capabilities, user: None, database: None, auth_plugin: None, ssl_only: capabilities & cap::SSL != 0 });
    }
    let user = r.cstr();
    if capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_str()?;
    } else if capabilities & cap::SECURE_CONNECTION != 0 {
        let n = r.u8()? as usize;
        r.bytes(n)?;
    } else {
        r.cstr()?;
    }
    let database = if capabilities & cap::CONNECT_WITH_DB != 0 { r.cstr() } else { None };
    let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 { r.cstr() } else { None };
    Some(Login { capabilities, user, database, auth_plugin, ssl_only: false })
}

/// An OK packet (0x00, or 0xfe ending a result set): affected rows, last insert id,
/// status flags, warnings.
pub fn ok(p: &[u8]) -> Option<(u64, u64, u16, u16)> {
    let mut r = Reader::new(p);
    r.u8()?;
    let affected = r.lenenc()?;
    let insert_id = r.lenenc()?;
    let status = r.u16().unwrap_or(0);
    let warnings = r.u16().unwrap_or(0);
    Some((affected, insert_id, status, warnings))
}

/// An ERR packet: code, SQLSTATE (when sent) and message.
pub fn err(p: &[u8]) -> Option<(u16, Option<&[u8]>, &[u8])> {
    let mut r = Reader::new(p);
    if r.u8()? != 0xff {
        return None;
    }
    let code = r.u16()?;
    let state = if r.rest().first() == Some(&b'#') {
        r.u8();
        r.bytes(5)
    } else {
        None
    };
    Some((code, state, r.rest()))
}

/// The name of a column definition (Protocol::ColumnDefinition41).
pub fn column_name(p: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(p);
    for _ in 0..4 {
        r.lenenc_str()?;
    }
    r.lenenc_str()
}

/// Whether a packet ends a run of rows or column definitions: an EOF (0xfe, shorter than
/// 9 bytes), or the OK that replaces it with CLIENT_DEPRECATE_EOF.
pub fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_messages() {
        assert_eq!(Reader::new(&[0xfc, 0x34, 0x12]).lenenc(), Some(0x1234));
        assert_eq!(Reader::new(&[0xfb]).lenenc(), None);
        assert_eq!(header(&[3, 0, 0, 7]), Some((3, 7)));
        assert_eq!(command_name(3), Some("COM_QUERY"));
        assert_eq!(command_name(0x1f), Some("COM_RESET_CONNECTION"));
        assert_eq!(command_name(200), None);
        let e = b"\xff\x7a\x04#42S02Table 'shop.nope' doesn't exist";
        assert_eq!(err(e), Some((1146, Some(&b"42S02"[..]), &b"Table 'shop.nope' doesn't exist"[..])));
        assert_eq!(ok(b"\x00\x01\x05\x02\x00\x00\x00"), Some((1, 5, 2, 0)));
        assert!(is_eof(b"\xfe\x00\x00\x02\x00"));
        // a column definition: def, schema, table, org_table, name, ...
        assert_eq!(column_name(b"\x03def\x04shop\x01t\x01t\x02id\x02id\x0c"), Some(&b"id"[..]));
    }
}
