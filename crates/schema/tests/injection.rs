//! No record field can inject a label: whatever a record's fields hold (quotes, backslashes,
//! newlines, `", x="`, braces, `U+FFFD`, escape-looking text…), the labels that reach Loki are
//! exactly the ones the label policy meant, in both push encodings, when read the way Loki
//! reads them (`schema::loki::label_text`, Loki's parser, recorded against a real Loki: a JSON
//! label name is pasted into Loki's label text unquoted, so `{"x=\"1\", injected": "2"}` stores
//! two labels).

// As clippy.toml says for test functions: a failed unwrap in a test helper is a failed test
// with a backtrace.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use schema::labels::{LabelPolicy, LabelSet};
use schema::loki::codec::{decode_json, decode_protobuf, encode_json, EncodeError};
use schema::loki::encoded::EncodedEntries;
use schema::loki::label_text;
use schema::loki::limits::{parse_stream_labels, Limits, SERVICE_NAME};
use schema::loki::proto::PushRequest;
use schema::parse_record;

/// Characters that break naive label rendering, mixed with ordinary ones.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\"",
        "\\",
        "\n",
        "\r",
        "\t",
        "{",
        "}",
        ",",
        "=",
        "=~",
        "!=",
        " ",
        "\", x=\"",
        "\"}",
        "{a=\"b\"}",
        "\\x41",
        "\\u00e9",
        "\\\"",
        "`",
        "'",
        "\u{fffd}",
        "\u{0}",
        "\u{7f}",
        "\u{a0}",
        "\u{2028}",
        "é",
        "€",
        "😀",
        "a",
        "b",
        "service",
        "injected",
        "#",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 1..12).prop_map(|p| p.concat()),
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

/// A valid record whose service and extra fields are hostile.
fn record_json() -> impl Strategy<Value = String> {
    (hostile(), hostile(), hostile()).prop_filter_map(
        "a service Loki's contract accepts",
        |(service, region, tier)| {
            let service = service.trim().to_owned();
            if service.is_empty() || service.len() > 128 {
                return None;
            }
            Some(
                serde_json::json!({
                    "timestamp": "2026-12-05T06:00:00Z",
                    "level": "info",
                    "service": service,
                    "message": "m",
                    "region": region,
                    "tier": tier,
                })
                .to_string(),
            )
        },
    )
}

fn policy() -> LabelPolicy {
    let mut p = LabelPolicy::with_environment("prod\", injected=\"1");
    p.record_labels = vec![
        "service".into(),
        "level".into(),
        "region".into(),
        "tier".into(),
    ];
    p
}

/// The label set Loki holds for a stream sent as `text` (protobuf) or rebuilt from JSON, without
/// the `service_name` it adds.
fn as_loki_reads(text: &str) -> Vec<(String, String)> {
    label_text::parse(text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_record_field_injects_a_label_in_either_encoding(json in record_json()) {
        let record = parse_record(&json).unwrap();
        let policy = policy();
        let labels = policy.labels_for(&record);
        let intended: Vec<(String, String)> = labels.pairs().to_vec();
        prop_assert!(intended.iter().all(|(_, v)| !v.is_empty()));

        // The consumer's path: the entry encoded into its stream, the push built from it.
        let text = labels.to_string();
        let mut entries = EncodedEntries::new();
        let metadata = policy.metadata_for(&record);
        entries.push(
            record.timestamp.as_nanos(),
            &record.to_json(),
            metadata.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            (),
        );
        let push = entries.push_request(&text, 0..1).unwrap();

        // Protobuf: the label text as sent.
        let mut scratch = schema::loki::encoded::SnappyScratch::default();
        let body = entries.snappy_push(&text, 0..1, &mut scratch).unwrap();
        let sent = decode_protobuf(&body, usize::MAX).unwrap();
        prop_assert_eq!(as_loki_reads(&sent.streams[0].labels), intended.clone());

        // JSON: Loki pastes the names into its own text, unquoted.
        let body = encode_json(&push).unwrap();
        let read = decode_json(&body, false, usize::MAX).unwrap();
        prop_assert_eq!(as_loki_reads(&read.streams[0].labels), intended.clone());

        // And through Loki's whole label check: the same set plus service_name from `service`.
        let checked = parse_stream_labels(&read.streams[0].labels, &Limits::default()).unwrap();
        let mut with_service = intended;
        with_service.push((SERVICE_NAME.to_owned(), labels.get("service").unwrap().to_owned()));
        with_service.sort();
        prop_assert_eq!(checked.labels.pairs().to_vec(), with_service);
    }

    #[test]
    fn any_label_set_reaches_loki_exactly_in_protobuf(
        pairs in prop::collection::btree_map(hostile(), hostile(), 1..6)
    ) {
        let set = LabelSet::from_pairs(pairs.clone());
        let text = set.to_string();
        let want: Vec<(String, String)> = pairs.into_iter().collect();
        prop_assert_eq!(as_loki_reads(&text), want);
    }

    #[test]
    fn json_carries_a_label_set_exactly_or_refuses_it(
        pairs in prop::collection::btree_map(hostile(), hostile(), 1..6)
    ) {
        let set = LabelSet::from_pairs(pairs.clone());
        let push = PushRequest {
            streams: vec![schema::loki::proto::StreamAdapter {
                labels: set.to_string(),
                entries: vec![],
                hash: 0,
            }],
        };
        match encode_json(&push) {
            Ok(body) => {
                let read = decode_json(&body, false, usize::MAX).unwrap();
                let want: Vec<(String, String)> = pairs.into_iter().collect();
                prop_assert_eq!(as_loki_reads(&read.streams[0].labels), want);
            }
            Err(EncodeError::UnsafeLabel { .. }) => {
                // Only what Loki would misread is refused.
                let misread = set.pairs().iter().any(|(k, v)| {
                    !schema::labels::is_valid_label_name(k) || v.contains('\u{fffd}')
                });
                prop_assert!(misread);
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
    }
}

#[test]
fn the_classic_injections_stay_values() {
    for value in [
        r#"api", injected="1"#,
        "api\"}\n{injected=\"1",
        r#"api\", x=\""#,
        "a\\\"b",
        "\u{fffd}",
    ] {
        let set = LabelSet::from_pairs([("service", value)]);
        let read = as_loki_reads(&set.to_string());
        assert_eq!(
            read,
            [("service".to_owned(), value.to_owned())],
            "{value:?}"
        );
    }
}

#[test]
fn loki_does_inject_through_an_unquoted_json_name_which_the_encoder_refuses() {
    // What Loki does with such a name (recorded: json-label-name-injection)…
    let body = br#"{"streams":[{"stream":{"x=\"1\", injected":"2"},"values":[["1","l"]]}]}"#;
    let read = decode_json(body, false, 1 << 20).unwrap();
    assert_eq!(
        as_loki_reads(&read.streams[0].labels),
        [
            ("injected".to_owned(), "2".to_owned()),
            ("x".to_owned(), "1".to_owned())
        ]
    );
    // …is why the encoder refuses names outside Loki's grammar, and the policy never makes one.
    let set = LabelSet::from_pairs([("x=\"1\", injected", "2")]);
    let push = PushRequest {
        streams: vec![schema::loki::proto::StreamAdapter {
            labels: set.to_string(),
            entries: vec![],
            hash: 0,
        }],
    };
    assert!(matches!(
        encode_json(&push),
        Err(EncodeError::UnsafeLabel { .. })
    ));
    assert_eq!(
        schema::labels::sanitize_label_name("x=\"1\", injected"),
        "x__1___injected"
    );
}
