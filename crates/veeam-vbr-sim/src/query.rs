//! Query strings: every parameter the spec defines is validated; a malformed value is a 400.

use std::time::SystemTime;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use uuid::Uuid;

use crate::error::ApiError;
use crate::timefmt;

/// Decoded query pairs, in order; repeated names kept (array parameters).
pub struct Q(pub Vec<(String, String)>);

impl Q {
    pub fn from(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<Q, ApiError> {
        q.map(|Query(v)| Q(v)).map_err(|e| ApiError::bad_request(format!("Malformed query string: {e}")))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// All values of an array parameter, repeated or comma-separated.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|v| v.parse::<i32>().map(i64::from).map_err(|_| bad(name, v))).transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "true" | "True" => Ok(true),
                "false" | "False" => Ok(false),
                _ => Err(bad(name, v)),
            })
            .transpose()
    }

    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.get(name).map(|v| Uuid::parse_str(v).map_err(|_| bad(name, v))).transpose()
    }

    pub fn time(&self, name: &str) -> Result<Option<SystemTime>, ApiError> {
        self.get(name).map(|v| timefmt::parse(v).ok_or_else(|| bad(name, v))).transpose()
    }

    /// A value that must be one of `allowed` (an enum of the spec).
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => Err(bad(name, v)),
        }
    }
}

fn bad(name: &str, v: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid value {v:?} for query parameter {name}"))
}

/// A path id must be a UUID (`format: uuid`). A malformed one cannot name any object; it is
/// refused as a malformed request (400) rather than as a missing object (404).
pub fn path_uuid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad_request(format!("{s:?} is not a valid UUID")))
}
