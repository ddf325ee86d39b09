//! Secret values for tests: distinctive strings that cannot occur by chance in a log, and the
//! forms in which a secret may leak (as is, inside Basic credentials, base64-encoded).

/// A value no log would contain by chance: `label` and a suffix unique on this machine (process
/// id, counter, clock; [`testkit::broker::unique_name`]), in a shape no secret scanner mistakes
/// for a real credential.
pub fn distinctive(label: &str) -> String {
    let unique = testkit::broker::unique_name(label).replace('-', "Q");
    format!("Sx{unique}K")
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic credentials use.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The strings whose presence in a text means `secret` leaked: the secret itself and its base64
/// form (how it would appear inside a logged header or body).
pub fn leak_forms(secret: &str) -> Vec<String> {
    vec![secret.to_owned(), base64(secret.as_bytes())]
}

/// Which of `needles` occur in `text`.
pub fn found_in<'a>(text: &str, needles: &'a [String]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|n| !n.is_empty() && text.contains(n.as_str()))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinctive_values_differ_and_are_found() {
        let a = distinctive("a");
        assert_ne!(a, distinctive("a"));
        let forms = leak_forms(&a);
        assert_eq!(found_in(&format!("x {a} y"), &forms), [a.as_str()]);
        assert!(found_in("nothing here", &forms).is_empty());
    }
}
