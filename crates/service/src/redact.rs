//! Redaction of credentials that travel inside other values, for logs, errors and metrics
//! (README, "Configuration": secrets are never logged). A URL may carry a user and password
//! (`http://user:password@host`, RFC 3986 section 3.2.1); [`url_credentials`] returns a copy
//! that is safe to show, with every such password replaced by `***`.

use std::borrow::Cow;

/// What a password inside a URL is replaced with.
pub const MASK: &str = "***";

/// `text` with the password of every `scheme://user:password@host` in it replaced by
/// [`MASK`] (`http://user:***@host`). A user name without a password is kept; text without
/// credentials is returned as is, without copying.
///
/// Works on a bare URL and on any text that contains URLs (an error message, a list), and on
/// strings that are not valid URLs, so it never fails and never echoes what it cannot parse.
pub fn url_credentials(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let authority_start = search + found + 3;
        // The authority ends at the first `/`, `?`, `#` or whitespace (RFC 3986 section 3.2).
        let authority_end = text[authority_start..]
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .map_or(text.len(), |i| authority_start + i);
        let authority = &text[authority_start..authority_end];
        // The userinfo ends at the last `@` (an unencoded `@` in a password is common).
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                let password_start = authority_start + colon + 1;
                out.push_str(&text[copied..password_start]);
                out.push_str(MASK);
                copied = authority_start + at;
            }
        }
        search = authority_end;
    }
    if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_masked_and_the_rest_kept() {
        assert_eq!(
            url_credentials("http://url-user:s3cret@loki:3100/prefix?x=1"),
            "http://url-user:***@loki:3100/prefix?x=1"
        );
        assert_eq!(
            url_credentials("https://u:p%40ss@host"),
            "https://u:***@host"
        );
    }

    #[test]
    fn a_password_holding_at_signs_and_colons_is_masked_whole() {
        assert_eq!(
            url_credentials("http://u:a:b@c@host:1/x"),
            "http://u:***@host:1/x"
        );
    }

    #[test]
    fn every_url_in_a_text_is_masked() {
        assert_eq!(
            url_credentials("GET http://a:one@h1/ready failed, then http://b:two@h2 refused"),
            "GET http://a:***@h1/ready failed, then http://b:***@h2 refused"
        );
    }

    #[test]
    fn text_without_a_password_is_borrowed_unchanged() {
        for text in [
            "http://localhost:3100",
            "http://user@host/path",
            "localhost:9092,k2:9092",
            "no url here",
            "http://",
            "http://host/a@b:c",
            "",
        ] {
            assert!(
                matches!(url_credentials(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }
}
