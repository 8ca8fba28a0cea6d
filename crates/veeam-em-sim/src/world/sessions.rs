//! Logon sessions: logon, authentication by token, idle expiry, log-off.

use super::*;

impl World {
    pub(crate) fn logon(&mut self, user: &str, password: &str, now: Instant) -> Result<(String, Body), SimError> {
        let known = self.inventory.users.iter().any(|u| u.name == user && u.password == password);
        if !known {
            return Err(err(401, "Authentication failed"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        // Real EM tokens are observed to be base64 of the session id; clients must not rely on it.
        let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, id.as_bytes());
        self.sessions.insert(
            id.clone(),
            LogonSession {
                id: id.clone(),
                token: token.clone(),
                user: user.to_owned(),
                last_seen: now,
                expired: false,
                next_task: 0,
            },
        );
        Ok((token, self.logon_body(&id)))
    }

    pub(super) fn logon_body(&self, id: &str) -> Body {
        let s = &self.sessions[id];
        let base = &self.base;
        Body::Entity(
            El::new("LogonSession")
                .attr("Type", "LogonSession")
                .attr("Href", format!("{base}/logonSessions/{id}"))
                .links(vec![
                    link("Up", Some("EnterpriseManager"), format!("{base}/")),
                    link("Down", Some("VmRestorePointReferenceList"), format!("{base}/vmRestorePoints")),
                    link("Down", Some("VmReplicaPointReferenceList"), format!("{base}/vmReplicaPoints")),
                    link("Down", Some("CatalogVmReferenceList"), format!("{base}/catalog/vms")),
                    link("Down", Some("RestoreSessionReferenceList"), format!("{base}/restoreSessions")),
                    link("Down", Some("TaskList"), format!("{base}/tasks")),
                    link("Delete", None, format!("{base}/logonSessions/{id}")),
                ])
                .field("UserName", s.user.clone())
                .field("SessionId", id),
        )
    }

    /// Checks a token: the logon session id, or 401 when unknown or expired.
    pub(crate) fn authenticate(&mut self, token: Option<&str>, now: Instant) -> Result<String, SimError> {
        let token = token.ok_or_else(|| err(401, "Authorization header has been expected but not found"))?;
        let session = self
            .sessions
            .values_mut()
            .find(|s| s.token == token)
            .ok_or_else(|| err(401, "Authorization token is not valid"))?;
        if session.expired {
            return Err(err(401, "Logon session has expired"));
        }
        session.last_seen = now;
        Ok(session.id.clone())
    }

    pub(crate) fn get_logon_session(&self, caller: &str, id: &str) -> Reply {
        if caller != id {
            return Err(err(404, format!("Logon session {id} not found")));
        }
        Ok(self.logon_body(id))
    }

    pub(crate) fn list_logon_sessions(&self, caller: &str) -> Reply {
        let Body::Entity(own) = self.logon_body(caller) else { unreachable!("logon_body is an entity") };
        Ok(Body::Collection { plural: "LogonSessions".into(), items: vec![own] })
    }

    /// Log-off. What happens to the session's mounts is undocumented (docs/em-api-notes.md §8.2); here they
    /// stay mounted and become unreachable, the worst case.
    pub(crate) fn logoff(&mut self, caller: &str, id: &str) -> Result<(), SimError> {
        if caller != id {
            return Err(err(404, format!("Logon session {id} not found")));
        }
        if let Some(s) = self.sessions.get_mut(id) {
            s.expired = true;
        }
        Ok(())
    }
}
