//! The phases of a probe run: the `phase` label, and the key of each step timeout.

use std::time::Duration;

use crate::duration::Prom;
use crate::fields::Fields;

/// One step of a probe run. Each kind of probe goes through some of them, in order. The
/// `phase` label value and `step_timeouts` key is the snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr, strum::EnumCount)]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    /// Finding the newest restore point.
    Lookup,
    /// Mount task to `Finished`, and reading the mount.
    Mount,
    /// Listing a directory of the mount, or the catalog browse (`BrowseVM`) of a point.
    Browse,
    /// Restore task to `Finished` (catalog or download restore).
    Restore,
    /// Catalog restore session to `Stopped`.
    RestoreSession,
    /// Fetching the restored file.
    Download,
    /// Deleting the mount and confirming it is gone.
    Unmount,
}

super::vocabulary!(Phase);

impl Phase {
    fn default_timeout(self) -> Duration {
        let minutes = match self {
            Phase::Lookup => 1,
            Phase::Mount => 10,
            Phase::Browse => 2,
            Phase::Restore => 10,
            Phase::RestoreSession => 30,
            Phase::Download => 5,
            Phase::Unmount => 5,
        };
        Duration::from_secs(minutes * 60)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The timeout of each step. Each bounds one step on its own; none wraps a whole probe.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTimeouts([Duration; <Phase as strum::EnumCount>::COUNT]);

impl Default for StepTimeouts {
    fn default() -> StepTimeouts {
        StepTimeouts(std::array::from_fn(|i| Phase::ALL[i].default_timeout()))
    }
}

impl StepTimeouts {
    pub fn get(&self, phase: Phase) -> Duration {
        self.0[phase as usize]
    }

    /// Decodes `step_timeouts` (only the keys of `phases`, each greater than 0).
    pub fn decode(f: &mut Fields, phases: &[Phase], owner: &str) -> StepTimeouts {
        let mut steps = StepTimeouts::default();
        let Some(mut inner) = f.nested("step_timeouts") else { return steps };
        for &phase in phases {
            match inner.optional::<Prom>(phase.as_str()) {
                Some(Prom(d)) if d.is_zero() => inner.error(phase.as_str(), "must be greater than 0"),
                Some(Prom(d)) => steps.0[phase as usize] = d,
                None => {}
            }
        }
        inner.finish(Some(owner));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_is_listed_once_in_order() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i, "{p}");
        }
    }
}
