//! Packet time: nanoseconds since the Unix epoch, taken from the capture, never from a clock.

use std::fmt;

/// A capture timestamp in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const NANOS_PER_SEC: u64 = 1_000_000_000;

    pub fn from_parts(secs: u64, nanos: u64) -> Self {
        Timestamp(secs.saturating_mul(Self::NANOS_PER_SEC).saturating_add(nanos))
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Microseconds from `earlier` to `self`, zero when `self` is earlier (clock steps in captures).
    pub fn micros_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000
    }

    pub fn saturating_add_nanos(self, n: u64) -> Self {
        Timestamp(self.0.saturating_add(n))
    }
}

/// Days since the epoch to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC with nine fraction digits: `2026-01-02T03:04:05.123456789Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / Self::NANOS_PER_SEC;
        let nanos = self.0 % Self::NANOS_PER_SEC;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanos() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Timestamp::from_parts(1_700_000_000, 123_456_789).to_string(),
            "2023-11-14T22:13:20.123456789Z"
        );
        // a leap day
        assert_eq!(Timestamp::from_parts(951_782_400, 1).to_string(), "2000-02-29T00:00:00.000000001Z");
    }

    #[test]
    fn micros_never_negative() {
        assert_eq!(Timestamp(5_000).micros_since(Timestamp(9_000)), 0);
        assert_eq!(Timestamp(9_000).micros_since(Timestamp(5_000)), 4);
    }
}
