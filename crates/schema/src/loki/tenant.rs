//! Loki tenant IDs (`X-Scope-OrgID`), checked as Loki (dskit) checks them: at most 150 bytes of
//! `a-zA-Z0-9!-_.*'()`, not `.` or `..`, and one tenant only (`a|b` names several, which a push
//! cannot have). Recorded behaviour: `tests/loki-conformance` (the shared recording), group `auth`.

use thiserror::Error;

/// Loki's longest tenant ID, in bytes.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// A tenant ID Loki refuses (with a 400).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TenantIdError {
    /// Empty.
    #[error("tenant ID is empty")]
    Empty,
    /// Several tenants (`a|b`).
    #[error("multiple org IDs present")]
    Multiple,
    /// A character dskit does not allow.
    #[error("tenant ID '{tenant}' contains unsupported character '{character}'")]
    Unsupported {
        /// The tenant ID.
        tenant: String,
        /// The first unsupported character.
        character: char,
    },
    /// Over 150 bytes.
    #[error("tenant ID is too long: max 150 characters")]
    TooLong,
    /// `.` or `..`.
    #[error("tenant ID is '.' or '..'")]
    Unsafe,
}

/// Checks a tenant ID as Loki does.
pub fn check_tenant_id(id: &str) -> Result<(), TenantIdError> {
    if id.is_empty() {
        return Err(TenantIdError::Empty);
    }
    if id.contains('|') {
        return Err(TenantIdError::Multiple);
    }
    if let Some(character) = id.chars().find(|c| !supported(*c)) {
        return Err(TenantIdError::Unsupported {
            tenant: id.to_owned(),
            character,
        });
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(TenantIdError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(TenantIdError::Unsafe);
    }
    Ok(())
}

/// A character dskit allows in a tenant ID.
pub fn is_supported_tenant_char(c: char) -> bool {
    supported(c)
}

fn supported(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_loki_accepts_and_names_what_it_refuses() {
        assert_eq!(check_tenant_id("team-a"), Ok(()));
        assert_eq!(check_tenant_id("!-_.*'()"), Ok(()));
        assert_eq!(check_tenant_id(&"a".repeat(150)), Ok(()));
        assert_eq!(check_tenant_id(""), Err(TenantIdError::Empty));
        assert_eq!(check_tenant_id("a|b"), Err(TenantIdError::Multiple));
        assert_eq!(check_tenant_id(".."), Err(TenantIdError::Unsafe));
        assert_eq!(
            check_tenant_id(&"a".repeat(151)),
            Err(TenantIdError::TooLong)
        );
        assert!(matches!(
            check_tenant_id("a/b"),
            Err(TenantIdError::Unsupported { character: '/', .. })
        ));
    }
}
