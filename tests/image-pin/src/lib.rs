//! The one rule for a pinned container image reference. The Dockerfile check
//! (`logpipe-security`) uses it directly; the GitLab pipeline check (`scripts/lib/ci_invariants.py`)
//! asks the `image-pin` binary, so both judge an image the same way. No dependencies: the
//! pipeline's check builds it in seconds.
//!
//! A reference is pinned when it names a digest (`@sha256:…`), a commit SHA tag (40 hex
//! digits), or a version tag with at least major and minor (`1.95-bookworm`, `v2.55.1`,
//! `27.5.1-dind`). A missing tag (`latest`), a floating tag (`stable`, `alpine`, …) or a
//! major-only tag (`rust:1-bookworm`) follows whatever the registry publishes next. Images under
//! `localhost/` are built on the machine that uses them and never pulled: any tag but a floating
//! one will do.

/// Tags that name a moving target even though they are tags.
pub const FLOATING_TAGS: &[&str] = &[
    "latest", "stable", "edge", "nightly", "lts", "current", "mainline", "main", "master", "slim",
    "alpine", "bookworm",
];

/// `None` when `reference` is pinned, otherwise why it is not. The reference must already have
/// its variables substituted: one that still holds a `$` cannot be judged.
pub fn problem(reference: &str) -> Option<String> {
    if reference.contains('$') {
        return Some("uses a variable that is not defined: cannot tell its tag".to_owned());
    }
    if reference.contains("@sha256:") {
        return None;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let Some((_, tag)) = last.split_once(':') else {
        return Some("has no tag (that means `latest`)".to_owned());
    };
    if tag.is_empty() {
        return Some("has an empty tag".to_owned());
    }
    if FLOATING_TAGS.iter().any(|f| f.eq_ignore_ascii_case(tag)) {
        return Some(format!("uses the floating tag `{tag}`"));
    }
    let local = reference
        .split('/')
        .next()
        .is_some_and(|host| host == "localhost" || host.starts_with("localhost:"))
        && reference.contains('/');
    if local || is_commit_sha(tag) || has_major_minor(tag) {
        return None;
    }
    Some(format!(
        "tag `{tag}` is not a version (major.minor at least, a commit SHA or a digest)"
    ))
}

fn is_commit_sha(tag: &str) -> bool {
    tag.len() == 40 && tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Digits, a dot, digits, anywhere in the tag.
fn has_major_minor(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    bytes
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn versions_digests_and_commit_shas_are_pinned() {
        for pinned in [
            "rust:1.95-bookworm",
            "docker.io/library/rust:1.95-bookworm",
            "prom/prometheus:v2.55.1",
            "docker:27.5.1-dind",
            "registry.example.com:5000/team/app:1.2",
            "registry.invalid/project/logpipe-producer:0123456789abcdef0123456789abcdef01234567",
            "debian@sha256:0123",
            "localhost/logpipe-standin-loki:testkit",
            "localhost:5000/x:dev",
        ] {
            assert_eq!(problem(pinned), None, "{pinned}");
        }
    }

    #[test]
    fn missing_floating_and_major_only_tags_are_not() {
        for (reference, needle) in [
            ("debian", "no tag"),
            ("registry.example.com:5000/team/app", "no tag"),
            ("debian:latest", "floating tag `latest`"),
            ("alpine:Stable", "floating tag `Stable`"),
            ("rust:1-bookworm", "not a version"),
            ("debian:bookworm-slim", "not a version"),
            ("app:", "empty tag"),
            ("rust:${RUST_VERSION}", "variable"),
            ("localhost/x:latest", "floating"),
            ("localhost/x", "no tag"),
            ("localhostx/app:dev", "not a version"),
        ] {
            let why = problem(reference).unwrap_or_default();
            assert!(why.contains(needle), "{reference}: {why:?}");
        }
    }
}
