//! Structured metadata as Loki stores it (the corpus in `loki-conformance/`, cases
//! `sm-name-normalisation`, `sm-name-collision`, `sm-name-empty`): names are rewritten to
//! Prometheus' label grammar rather than rejected (`trace.id` → `trace_id`, `1abc` →
//! `key_1abc`, `a-b` and `a__b` → `a_b`), names that collide keep one value, pairs with an empty
//! value are dropped, and `U+FFFD` is removed from values. A name that is empty, or that
//! normalises to underscores only, fails the **whole push** with a 500 that retrying never
//! cures.
//!
//! The consumer relies on this to predict what Loki holds: an entry is a duplicate of a stored
//! one only when timestamp, line *and* the stored metadata are equal (`dup-different-sm`).

use std::borrow::Cow;

use thiserror::Error;

use super::proto::LabelPairAdapter;

/// The metadata name Loki adds to every entry (`detected_level`). Loki leaves it out of the
/// structured-metadata size it checks and rate-limits.
pub const DETECTED_LEVEL: &str = "detected_level";

/// A structured-metadata name Loki refuses: the push answers 500 with this text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataNameError {
    /// The name is empty.
    #[error("label name is empty")]
    Empty,
    /// The name normalises to underscores only (`é`, `__`, `-.`).
    #[error("normalization for label name {name:?} resulted in invalid name {normalized:?}")]
    Invalid {
        /// The name as sent.
        name: String,
        /// What it normalised to.
        normalized: String,
    },
}

/// The name Loki stores for a structured-metadata name (Prometheus' `otlptranslator`
/// `LabelNamer`, as Loki configures it): every run of characters outside `[a-zA-Z0-9]` becomes
/// one `_` (so `a__b` is `a_b`), except that a name that starts and ends with `__` keeps those;
/// a leading digit gets `key_`. Borrowed when the name is already in that form.
pub fn normalize_metadata_name(name: &str) -> Result<Cow<'_, str>, MetadataNameError> {
    if name.is_empty() {
        return Err(MetadataNameError::Empty);
    }
    if is_normalized(name) {
        return Ok(Cow::Borrowed(name));
    }
    let out = rewrite(name);
    if out.bytes().all(|b| b == b'_') {
        return Err(MetadataNameError::Invalid {
            name: name.to_owned(),
            normalized: out,
        });
    }
    Ok(Cow::Owned(out))
}

/// Loki's rewrite of a name (see [`normalize_metadata_name`]), without its checks.
fn rewrite(name: &str) -> String {
    let reserved = name.len() >= 4 && name.starts_with("__") && name.ends_with("__");
    let inner = if reserved {
        &name[2..name.len() - 2]
    } else {
        name
    };
    let mut out = String::with_capacity(name.len() + 4);
    if reserved {
        out.push_str("__");
    }
    let mut previous_underscore = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            previous_underscore = false;
        } else if !previous_underscore {
            out.push('_');
            previous_underscore = true;
        }
    }
    if reserved {
        out.push_str("__");
    }
    if out.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.insert_str(0, "key_");
    }
    out
}

/// Whether Loki keeps `name` as it is (a fast path: [`rewrite`] would return it unchanged and
/// it is valid).
fn is_normalized(name: &str) -> bool {
    // One pass (this runs for every name of every entry): only [a-zA-Z0-9_], no leading digit,
    // not only underscores, and no `__` inside except as a reserved name's `__…__` ends.
    let b = name.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if first.is_ascii_digit() {
        return false;
    }
    let reserved = b.len() >= 4 && b.starts_with(b"__") && b.ends_with(b"__");
    let (start, end) = if reserved {
        (2, b.len() - 2)
    } else {
        (0, b.len())
    };
    let mut any_alphanumeric = false;
    let mut previous_underscore = false;
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            if previous_underscore && i > start && i < end {
                return false;
            }
            previous_underscore = true;
        } else if c.is_ascii_alphanumeric() {
            any_alphanumeric = true;
            previous_underscore = false;
        } else {
            return false;
        }
    }
    any_alphanumeric
}

/// The structured metadata Loki stores for `pairs` (before it adds `detected_level`): names
/// normalised by [`normalize_metadata_name`], pairs with an empty value dropped, `U+FFFD`
/// removed from values, and for names that collide the value of the last pair that was renamed
/// (or, if none was, the one sent). This is Prometheus' `labels.Builder` as Loki drives it, so
/// the order is the one sent when nothing changes (then `pairs` is returned borrowed) and by
/// name otherwise.
pub fn normalize_structured_metadata(
    pairs: &[LabelPairAdapter],
) -> Result<Cow<'_, [LabelPairAdapter]>, MetadataNameError> {
    let mut deleted: Vec<String> = pairs
        .iter()
        .filter(|p| p.value.is_empty())
        .map(|p| p.name.clone())
        .collect();
    let mut added: Vec<(String, String)> = Vec::new();
    let set = |added: &mut Vec<(String, String)>, deleted: &mut Vec<String>, n: &str, v: String| {
        if v.is_empty() {
            delete(added, deleted, n);
        } else if let Some(slot) = added.iter_mut().find(|(k, _)| k == n) {
            slot.1 = v;
        } else {
            added.push((n.to_owned(), v));
        }
    };
    for p in pairs {
        let normalized = normalize_metadata_name(&p.name)?;
        if normalized != p.name.as_str() {
            delete(&mut added, &mut deleted, &p.name);
            set(&mut added, &mut deleted, &normalized, p.value.clone());
        }
        if p.value.contains('\u{fffd}') {
            set(
                &mut added,
                &mut deleted,
                &normalized,
                p.value.replace('\u{fffd}', ""),
            );
        }
    }
    if deleted.is_empty() && added.is_empty() {
        return Ok(Cow::Borrowed(pairs));
    }
    let mut out: Vec<LabelPairAdapter> = pairs
        .iter()
        .filter(|p| !deleted.contains(&p.name) && !added.iter().any(|(k, _)| *k == p.name))
        .cloned()
        .collect();
    out.extend(
        added
            .into_iter()
            .map(|(name, value)| LabelPairAdapter { name, value }),
    );
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Cow::Owned(out))
}

fn delete(added: &mut Vec<(String, String)>, deleted: &mut Vec<String>, name: &str) {
    if let Some(i) = added.iter().position(|(k, _)| k == name) {
        added.remove(i);
    }
    deleted.push(name.to_owned());
}

/// Bytes of structured metadata as Loki counts them for `max_structured_metadata_size` and the
/// rate limits: name plus value of every pair except `detected_level`.
pub fn structured_metadata_size<'m>(pairs: impl IntoIterator<Item = (&'m str, &'m str)>) -> usize {
    pairs
        .into_iter()
        .filter(|(name, _)| *name != DETECTED_LEVEL)
        .map(|(name, value)| name.len() + value.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str) -> Result<String, MetadataNameError> {
        normalize_metadata_name(name).map(Cow::into_owned)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<LabelPairAdapter> {
        list.iter()
            .map(|(name, value)| LabelPairAdapter {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect()
    }

    fn as_tuples(list: &[LabelPairAdapter]) -> Vec<(&str, &str)> {
        list.iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_with_the_rewrite(name in "[a-zA-Z0-9_.é-]{0,8}") {
            let kept = !name.is_empty()
                && rewrite(&name) == name
                && !name.bytes().all(|b| b == b'_');
            proptest::prop_assert_eq!(is_normalized(&name), kept, "{:?}", name);
        }
    }

    #[test]
    fn rewrites_names_as_loki_does() {
        for (name, want) in [
            ("trace.id", "trace_id"),
            ("1abc", "key_1abc"),
            ("a__b", "a_b"),
            ("a-b", "a_b"),
            ("_x", "_x"),
            ("__y__", "__y__"),
            ("CamelCase", "CamelCase"),
            ("__x", "_x"),
            (
                "label_with_foreign_characters_字符",
                "label_with_foreign_characters_",
            ),
            ("http.status-code", "http_status_code"),
        ] {
            assert_eq!(n(name).unwrap(), want, "{name}");
        }
        assert!(matches!(
            normalize_metadata_name("trace_id"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn refuses_empty_and_underscore_only_names_with_lokis_text() {
        assert_eq!(n("").unwrap_err().to_string(), "label name is empty");
        assert_eq!(
            n("é").unwrap_err().to_string(),
            r#"normalization for label name "é" resulted in invalid name "_""#
        );
        for name in ["_", "__", "____", "-.", "ようこそ"] {
            assert!(n(name).is_err(), "{name}");
        }
    }

    #[test]
    fn normalises_like_the_recorded_loki() {
        // sm-name-normalisation
        let sent = pairs(&[
            ("trace.id", "1"),
            ("1abc", "2"),
            ("a__b", "3"),
            ("a-b", "4"),
            ("_x", "5"),
            ("__y__", "6"),
            ("CamelCase", "7"),
        ]);
        let got = normalize_structured_metadata(&sent).unwrap();
        assert_eq!(
            as_tuples(&got),
            [
                ("CamelCase", "7"),
                ("__y__", "6"),
                ("_x", "5"),
                ("a_b", "4"),
                ("key_1abc", "2"),
                ("trace_id", "1")
            ]
        );
        // sm-name-collision: the renamed pair wins over the one already named so.
        let sent = pairs(&[("a.b", "dotted"), ("a_b", "underscored")]);
        let got = normalize_structured_metadata(&sent).unwrap();
        assert_eq!(as_tuples(&got), [("a_b", "dotted")]);
    }

    #[test]
    fn keeps_clean_metadata_as_sent_and_drops_empty_values() {
        let clean = pairs(&[("z", "1"), ("a", "2")]);
        assert!(matches!(
            normalize_structured_metadata(&clean).unwrap(),
            Cow::Borrowed(b) if b == clean.as_slice()
        ));
        let sent = pairs(&[("z", "1"), ("e", "")]);
        let got = normalize_structured_metadata(&sent).unwrap();
        assert_eq!(as_tuples(&got), [("z", "1")]);
        let sent = pairs(&[("k", "a\u{fffd}b")]);
        let got = normalize_structured_metadata(&sent).unwrap();
        assert_eq!(as_tuples(&got), [("k", "ab")]);
        assert_eq!(
            normalize_structured_metadata(&pairs(&[("ok", "1"), ("", "v")])).unwrap_err(),
            MetadataNameError::Empty
        );
    }

    #[test]
    fn size_leaves_out_detected_level() {
        assert_eq!(
            structured_metadata_size([("k", "vv"), (DETECTED_LEVEL, "info")]),
            3
        );
    }
}
