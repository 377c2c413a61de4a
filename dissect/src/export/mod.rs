//! Entries in forms other tools read: HAR 1.2 (`har`), and a text table for terminals
//! (`table`) that never writes a captured control byte to the terminal.

pub mod har;
pub mod table;

/// Captured text made safe for a terminal: control characters (C0, DEL, C1), which would
/// start escape sequences or move the cursor, are shown escaped as `\xNN` / `\u{NN}`.
pub fn terminal_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x00'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{80}'..='\u{9f}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
