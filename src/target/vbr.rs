//! The logon to a VBR target (`api: vbr`): OAuth2, with the same refused-logon backoff as EM
//! (Active Directory locks accounts) and none after server errors. The client renews the access
//! token with the single-use refresh token, and logs on again when that fails, by itself.
//! Unlike EM, no mount belongs to a logon, so nothing here keeps a session for a mount's sake.

use std::sync::Arc;

use veeam_vbr::{Client, ClientConfig, Session};

use super::TargetRuntime;
use crate::cleanup;
use crate::config::Target;
use crate::metrics::ApiObserver;
use crate::secret::Secret;

/// The current VBR logon of a target.
pub(super) struct CurrentVbr {
    /// The client settings it was opened with; a reload that changes them opens a new one.
    identity: String,
    session: Session,
}

/// A VBR client with the target's settings.
pub fn vbr_client(
    c: &Target,
    password: Secret,
    observer: Option<Arc<dyn veeam_vbr::RequestObserver>>,
) -> veeam_vbr::Result<Client> {
    let mut config = ClientConfig::new(c.url.clone(), c.username.clone(), password);
    config.ca_file = c.ca_file.clone();
    config.insecure_skip_verify = c.insecure_skip_verify;
    config.request_timeout = c.request_timeout;
    Client::new(config, observer)
}

impl TargetRuntime {
    fn vbr_client(&self, password: Secret) -> veeam_vbr::Result<Client> {
        let observer = Arc::new(ApiObserver { metrics: self.metrics.clone(), target: self.config.name.clone() });
        vbr_client(&self.config, password, Some(observer))
    }

    /// The current VBR session, logging on first if there is none (or the settings changed).
    pub async fn vbr_session(&self) -> veeam_vbr::Result<Session> {
        let mut current = self.state.vbr.lock().await;
        let identity = self.identity();
        if let Some(c) = current.as_ref().filter(|c| c.identity == identity) {
            return Ok(c.session.clone());
        }
        if let Some(old) = current.take() {
            self.vbr_logout(&old.session).await;
        }
        let session = self.vbr_logon().await?;
        *current = Some(CurrentVbr { identity, session: session.clone() });
        Ok(session)
    }

    async fn vbr_logon(&self) -> veeam_vbr::Result<Session> {
        let name = self.name();
        let password = self.config.password.read().map_err(veeam_vbr::Error::Config)?;
        if let Some(wait) = self.backoff_left(&password) {
            return Err(veeam_vbr::Error::Config(format!(
                "VBR refused the last logon; not retrying for another {}s so the account is not locked out \
                 (a reload or a changed password file retries at once)",
                wait.as_secs()
            )));
        }
        self.metrics.write().logons.with_label_values(&[name]).inc();
        let result = match self.vbr_client(password.clone()) {
            Ok(client) => client.logon().await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(s) => {
                tracing::info!(target_name = name, api_version = %s.api_version(), "logged on to VBR");
                self.set_up(true);
                self.note_logon_accepted();
            }
            Err(e) => {
                let refused = matches!(e, veeam_vbr::Error::LogonFailed { .. } | veeam_vbr::Error::Forbidden { .. });
                let wait = if refused { Some(self.note_logon_refused(&password)) } else { None };
                tracing::warn!(target_name = name, reason = e.reason(), err = %e, next_attempt_in = ?wait, "VBR logon failed");
                self.metrics.write().logon_failures.with_label_values(&[name, e.reason()]).inc();
                self.set_up(false);
            }
        }
        result
    }

    /// Checks VBR still answers (`GET /api/v1/serverTime`, open to every role) and refreshes
    /// `veeam_restore_server_up`; logs on when there is no session yet.
    pub(super) async fn vbr_keep_alive(&self) {
        let current = self.state.vbr.lock().await.as_ref().map(|c| c.session.clone());
        let Some(session) = current else {
            let _ = self.vbr_session().await;
            return;
        };
        match session.server_time().await {
            Ok(_) => self.set_up(true),
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "VBR check failed");
                self.set_up(false);
                if matches!(e, veeam_vbr::Error::SessionExpired { .. }) {
                    // The client already renewed and logged on again; start over next time.
                    *self.state.vbr.lock().await = None;
                }
            }
        }
    }

    /// At shutdown: follows up every record (an earlier process's mount included), then logs out.
    pub(super) async fn vbr_logoff(&self) {
        cleanup::settle(self).await;
        if let Some(current) = self.state.vbr.lock().await.take() {
            self.vbr_logout(&current.session).await;
        }
    }

    async fn vbr_logout(&self, session: &Session) {
        match session.logout().await {
            Ok(()) => {
                tracing::info!(target_name = self.name(), "logged out from VBR");
                self.metrics.write().logoffs.with_label_values(&[self.name()]).inc();
            }
            Err(e) => tracing::warn!(target_name = self.name(), err = %e, "VBR logout failed"),
        }
    }
}
