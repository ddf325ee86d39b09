//! Which tenant a request belongs to (LOKI.md, "Request"): `X-Scope-OrgID`, required when Loki
//! runs with `auth_enabled`, else ignored and the tenant is `fake`. Tenant IDs are checked as
//! Loki (dskit) checks them.

use axum::http::HeaderMap;
use schema::loki::tenant::{check_tenant_id, is_supported_tenant_char, TenantIdError};
use thiserror::Error;

/// The tenant of every request when auth is off, as in Loki.
pub const FAKE_TENANT: &str = "fake";

/// A request without a usable tenant.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum TenantError {
    /// Auth is on and `X-Scope-OrgID` is missing or empty (401).
    #[error("no org id")]
    NoOrgId,
    /// A tenant ID Loki refuses (400), as `schema::loki::tenant` checks it.
    #[error(transparent)]
    Invalid(TenantIdError),
}

impl TenantError {
    /// The status Loki answers with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            TenantError::NoOrgId => 401,
            _ => 400,
        }
    }
}

/// The request's tenant.
pub(crate) fn tenant(headers: &HeaderMap, auth_enabled: bool) -> Result<&str, TenantError> {
    if !auth_enabled {
        return Ok(FAKE_TENANT);
    }
    let value = headers
        .get("x-scope-orgid")
        .map(|v| v.to_str().map(str::trim))
        .unwrap_or(Ok(""));
    let id = match value {
        Ok("") => return Err(TenantError::NoOrgId),
        Ok(id) => id,
        Err(_) => {
            let raw = headers
                .get("x-scope-orgid")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let character = raw
                .chars()
                .find(|c| !is_supported_tenant_char(*c))
                .unwrap_or('?');
            return Err(TenantError::Invalid(TenantIdError::Unsupported {
                tenant: raw,
                character,
            }));
        }
    };
    check_tenant_id(id).map_err(|e| match e {
        TenantIdError::Empty => TenantError::NoOrgId,
        other => TenantError::Invalid(other),
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-Scope-OrgID", HeaderValue::from_str(id).unwrap());
        h
    }

    #[test]
    fn tenant_is_fake_when_auth_is_off_whatever_the_header() {
        assert_eq!(tenant(&with("team-a"), false), Ok("fake"));
        assert_eq!(tenant(&HeaderMap::new(), false), Ok("fake"));
    }

    #[test]
    fn auth_needs_a_valid_org_id() {
        assert_eq!(tenant(&with("team-a"), true), Ok("team-a"));
        assert_eq!(tenant(&HeaderMap::new(), true), Err(TenantError::NoOrgId));
        assert_eq!(tenant(&with(""), true), Err(TenantError::NoOrgId));
        assert_eq!(
            tenant(&with("a|b"), true),
            Err(TenantError::Invalid(TenantIdError::Multiple))
        );
        assert_eq!(
            tenant(&with(".."), true),
            Err(TenantError::Invalid(TenantIdError::Unsafe))
        );
        assert_eq!(
            tenant(&with(&"a".repeat(151)), true),
            Err(TenantError::Invalid(TenantIdError::TooLong))
        );
        assert!(matches!(
            tenant(&with("a/b"), true),
            Err(TenantError::Invalid(TenantIdError::Unsupported {
                character: '/',
                ..
            }))
        ));
    }
}
