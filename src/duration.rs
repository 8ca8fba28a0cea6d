//! Durations in Prometheus' syntax (`30s`, `1h30m`, `500ms`, `2d`), for the configuration file
//! and the flags, so users write them as they do everywhere else in the ecosystem.
//!
//! As in Prometheus' `model.ParseDuration`: one or more `<integer><unit>` pairs, units `y`
//! (365 days), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and from largest to smallest;
//! a bare `0` means zero. Not accepted: fractions (`1.5h`), spaces, signs, other unit names.

use std::fmt::Write as _;
use std::time::Duration;

const UNITS: &[(&str, u64)] = &[
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus duration; the error says what is wrong and quotes the input.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("invalid duration {text:?}: {why} (use Prometheus syntax, e.g. 30s, 15m, 1h30m, 500ms)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    let mut last_unit = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        let index = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(|| {
            if unit.is_empty() { bad("missing unit") } else { bad(&format!("unknown unit {unit:?}")) }
        })?;
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        last_unit = Some(index);
        let part = number.checked_mul(UNITS[index].1).ok_or_else(|| bad("too large"))?;
        millis = millis.checked_add(part).ok_or_else(|| bad("too large"))?;
        rest = &rest[letters..];
    }
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way [`parse`] reads it (whole milliseconds), e.g. `1h30m`.
pub fn format(d: Duration) -> String {
    let mut millis = d.as_millis() as u64;
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in UNITS.iter().skip(2) {
        if millis >= *size {
            let _ = write!(out, "{}{unit}", millis / size);
            millis %= size;
        }
    }
    out
}

/// A duration as written in the configuration, for decoding key by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prom(pub Duration);

impl<'de> ::serde::Deserialize<'de> for Prom {
    fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Prom, D::Error> {
        serde::deserialize(d).map(Prom)
    }
}

/// `#[serde(with = "crate::duration::serde")]` for `Duration` fields of the configuration.
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_syntax() {
        let s = Duration::from_secs;
        assert_eq!(parse("30s"), Ok(s(30)));
        assert_eq!(parse("1h30m"), Ok(s(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2d"), Ok(s(2 * 86400)));
        assert_eq!(parse("1w2d"), Ok(s(9 * 86400)));
        assert_eq!(parse("1y"), Ok(s(365 * 86400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1m1s500ms"), Ok(Duration::from_millis(61_500)));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in
            ["", "15min", "1.5h", "-5m", "5", "m", "1m1h", "1s1s", " 5m", "5m ", "5 m", "1H", "99999999999999999999s"]
        {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [0, 500, 30_000, 5_400_000, 90_061_001] {
            let d = Duration::from_millis(d);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
    }
}
