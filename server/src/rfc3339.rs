//! RFC 3339 times on the wire, milliseconds since the Unix epoch inside. Written by
//! hand (the civil-date arithmetic of Howard Hinnant's `days_from_civil`) because the
//! server needs only UTC formatting and a strict parser.

/// Formats `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format(ms: u64) -> String {
    let mut buffer = [0; TEXT_LEN];
    match encode(ms, &mut buffer) {
        Some(text) => text.to_owned(),
        None => format_wide(ms),
    }
}

/// Appends `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` to `out`.
pub fn push(out: &mut String, ms: u64) {
    let mut buffer = [0; TEXT_LEN];
    match encode(ms, &mut buffer) {
        Some(text) => out.push_str(text),
        None => out.push_str(&format_wide(ms)),
    }
}

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const TEXT_LEN: usize = 24;

/// The `(year, month, day, second of day)` of `ms` since the epoch.
fn fields(ms: u64) -> (i64, i64, i64, u64) {
    let secs = ms / 1000;
    // u64 milliseconds cover 584 million years: the day count always fits an i64.
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, secs % 86_400)
}

/// Writes `ms` into `buffer` without allocating, for years 0000-9999 (every time
/// the server stamps or parses); `None` for later ones.
fn encode(ms: u64, buffer: &mut [u8; TEXT_LEN]) -> Option<&str> {
    let (y, m, d, rem) = fields(ms);
    let year = u32::try_from(y).ok().filter(|&y| y <= 9999)?;
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            buffer[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, u64::from(year), 4);
    put(5, m.unsigned_abs(), 2);
    put(8, d.unsigned_abs(), 2);
    put(11, rem / 3600, 2);
    put(14, rem % 3600 / 60, 2);
    put(17, rem % 60, 2);
    put(20, ms % 1000, 3);
    for (at, byte) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        buffer[at] = byte;
    }
    std::str::from_utf8(buffer).ok()
}

fn format_wide(ms: u64) -> String {
    let (y, m, d, rem) = fields(ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A time that serializes as RFC 3339 text without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0; TEXT_LEN];
        match encode(self.0, &mut buffer) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.serialize_str(&format_wide(self.0)),
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into ms since the epoch; times
/// before 1970 are refused.
pub fn parse(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let s = text.get(from..to)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &text[start..i.min(start + 3)];
        millis = digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_min * 60;
    u64::try_from(secs.checked_mul(1000)? + millis).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_without_allocating_and_falls_back_past_9999() {
        let json = serde_json::to_string(&Rfc3339(1_700_000_000_123)).expect("renders");
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        let far = 253_402_300_800_000; // 10000-01-01
        assert_eq!(format(far), "10000-01-01T00:00:00.000Z");
        let json = serde_json::to_string(&Rfc3339(u64::MAX)).expect("renders");
        assert!(json.ends_with("Z\""), "{json}");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parse_inverts_format_and_honours_offsets() {
        for ms in [0, 1_700_000_000_123, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse(&format(ms)), Some(ms));
        }
        assert_eq!(parse("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(parse("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
    }

    #[test]
    fn parse_refuses_malformed_times() {
        for bad in [
            "",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-01-01",
            "1969-12-31T23:59:59Z",
            "2023-01-01T00:00:00",
            "2023-01-01T00:00:00Zjunk",
            "２０２３-01-01T00:00:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
