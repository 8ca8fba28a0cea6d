//! A string that must never be printed: passwords, tokens and logon-session ids, shared by the
//! Veeam clients (`veeam-em`, `veeam-vbr`) and the exporter.

use std::fmt;

/// Holds a secret value. `Debug` and `Display` print `<secret>`; the value is only reachable
/// through [`Secret::expose`], so every place that uses it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s} {:?}", Some(&s)), "<secret> <secret> Some(<secret>)");
        assert_eq!(s.expose(), "hunter2");
    }
}
