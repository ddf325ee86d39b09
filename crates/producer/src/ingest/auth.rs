//! The ingest endpoint's bearer token (`INGEST_TOKEN`): a [`ValidateRequest`] for tower-http's
//! `ValidateRequestHeaderLayer`, comparing in constant time ([`subtle`]). Refusals answer 401
//! with `WWW-Authenticate: Bearer`, are all counted in
//! `ingestion_errors_total{stage="http",reason="unauthorized"}` and logged at most once per
//! interval ([`Metrics::unauthorized`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use service::config::ExposeSecret;
use subtle::ConstantTimeEq;
use tower_http::validate_request::ValidateRequest;

use super::Format;
use crate::metrics::Metrics;

/// Requires `Authorization: Bearer <token>`: the scheme in any case (RFC 7235 section 2.1),
/// one or more spaces, then exactly the token.
#[derive(Clone)]
pub(crate) struct BearerToken {
    token: service::config::Secret,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").finish_non_exhaustive()
    }
}

impl BearerToken {
    /// Checks requests against `token` (never empty: without a token there is no check).
    pub(crate) fn new(token: service::config::Secret, metrics: Arc<Metrics>) -> Self {
        Self { token, metrics }
    }

    fn matches(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, credentials)) = value.as_bytes().split_at_checked(6) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") || !credentials.starts_with(b" ") {
            return false;
        }
        let given = credentials.trim_ascii_start();
        // Unequal lengths answer at once (the length is not the secret); equal ones compare
        // every byte.
        bool::from(given.ct_eq(self.token.expose_secret().as_bytes()))
    }
}

impl<B> ValidateRequest<B> for BearerToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        if self.matches(request.headers().get(header::AUTHORIZATION)) {
            return Ok(());
        }
        self.metrics.unauthorized();
        let mut response = Format::declared(request.headers())
            .refusal(StatusCode::UNAUTHORIZED, "a bearer token is required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        let check = BearerToken::new(
            service::config::Secret::new("t0ken"),
            Arc::new(Metrics::unregistered(false)),
        );
        let ok = |v: &str| check.matches(Some(&HeaderValue::from_str(v).unwrap()));
        for good in [
            "Bearer t0ken",
            "bearer t0ken",
            "BEARER t0ken",
            "bEaReR   t0ken",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "Bearer t0ke",
            "Bearer t0kenx",
            "Bearer T0KEN",
            "Bearer ",
            "Bearer",
            "Bearert0ken",
            "t0ken",
            "Basic t0ken",
            "Token t0ken",
            "",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(!check.matches(None));
    }
}
