//! Secret values for tests: distinctive strings that cannot occur by chance in a log, and the
//! forms in which a secret may leak (as is, inside Basic credentials, base64-encoded).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A value no log would contain by chance: `label`, the process id, a counter and the clock, in
/// a shape no secret scanner mistakes for a real credential.
pub fn distinctive(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("Sx{label}Q{}N{n}Z{nanos:x}K", std::process::id())
}

/// Standard base64 with padding (RFC 4648), as HTTP Basic credentials use.
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
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
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn distinctive_values_differ_and_are_found() {
        let a = distinctive("a");
        assert_ne!(a, distinctive("a"));
        let forms = leak_forms(&a);
        assert_eq!(found_in(&format!("x {a} y"), &forms), [a.as_str()]);
        assert!(found_in("nothing here", &forms).is_empty());
    }
}
