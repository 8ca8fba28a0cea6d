//! RFC 3339 date-times, as the spec's `format: date-time` requires, without a calendar crate.

use std::time::{Duration, SystemTime};

/// `2026-12-07T04:20:00.123Z`.
pub fn format(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`. A value without an offset is refused: the
/// spec's `date-time` is RFC 3339, which requires one.
pub fn parse(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if s.len() < 20 || !s.is_char_boundary(19) {
        return None;
    }
    if let Some(base) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return humantime::parse_rfc3339(&format!("{base}Z")).ok();
    }
    let (base, off) = s.split_at(s.len().checked_sub(6)?);
    let sign = match off.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    let hh: u64 = off.get(1..3)?.parse().ok()?;
    let mm: u64 = off.get(4..6)?.parse().ok()?;
    if off.as_bytes().get(3) != Some(&b':') || hh > 23 || mm > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    let shift = Duration::from_secs(hh * 3600 + mm * 60);
    // local = utc + offset  =>  utc = local - offset
    if sign > 0 { local.checked_sub(shift) } else { local.checked_add(shift) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets() {
        let z = parse("2026-12-07T04:00:00Z").unwrap();
        assert_eq!(parse("2026-12-07T06:00:00+02:00"), Some(z));
        assert_eq!(parse("2026-12-07T03:00:00.000-01:00"), Some(z));
        assert_eq!(parse("2026-12-07T04:00:00"), None);
        assert_eq!(parse("garbage"), None);
        assert_eq!(format(z), "2026-12-07T04:00:00.000Z");
    }
}
