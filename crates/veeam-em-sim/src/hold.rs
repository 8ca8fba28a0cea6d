//! Holding the N-th API request, for crash-point tests: the test arms a hold, waits until the
//! request is held, kills the client exactly there, then releases it. `after` holds the answer
//! of a request EM has already carried out (the client never learns its outcome); `before`
//! holds it unprocessed, so a client that dies there leaves it undone (hyper drops the handler).
//! Not part of EM.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::vocab::Call;

/// Where the held request stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldPoint {
    /// Before the simulator acts on it.
    Before,
    /// After it acted, before the answer goes out.
    After,
}

/// `POST /sim/hold`: hold the `request`-th API request (1 = the next one) at `when`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSpec {
    pub request: u64,
    #[serde(default = "after")]
    pub when: HoldPoint,
}

fn after() -> HoldPoint {
    HoldPoint::After
}

/// The request being held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRequest {
    pub method: String,
    pub path: String,
    pub endpoint: Option<Call>,
}

/// `GET /sim/hold`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub armed: Option<HoldSpec>,
    /// API requests counted since the hold was armed.
    pub seen: u64,
    pub held: Option<HeldRequest>,
}

/// A held request is let go after this long even without a release, so a forgotten hold cannot
/// wedge the simulator.
const LONGEST_HOLD: Duration = Duration::from_secs(120);

#[derive(Default)]
pub(crate) struct Hold {
    state: Mutex<HoldView>,
    released: Notify,
}

impl Hold {
    fn state(&self) -> std::sync::MutexGuard<'_, HoldView> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn arm(&self, spec: HoldSpec) {
        *self.state() = HoldView { armed: Some(spec), seen: 0, held: None };
        self.released.notify_waiters();
    }

    /// Lets the held request (if any) go and disarms.
    pub(crate) fn release(&self) {
        self.state().armed = None;
        self.released.notify_waiters();
    }

    pub(crate) fn view(&self) -> HoldView {
        self.state().clone()
    }

    /// Counts one API request; the point to hold it at when it is the armed one.
    pub(crate) fn count(&self) -> Option<HoldPoint> {
        let mut state = self.state();
        let spec = state.armed?;
        state.seen += 1;
        (state.seen == spec.request).then_some(spec.when)
    }

    /// Holds `request` until [`Hold::release`] (or [`LONGEST_HOLD`]).
    pub(crate) async fn wait(&self, request: HeldRequest) {
        let deadline = tokio::time::Instant::now() + LONGEST_HOLD;
        self.state().held = Some(request);
        loop {
            let released = self.released.notified();
            if self.state().armed.is_none() {
                break;
            }
            tokio::select! {
                _ = released => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.state().held = None;
    }
}
