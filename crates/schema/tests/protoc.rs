//! Checks our protobuf bytes with an independent decoder: `protoc --decode` over Loki's
//! `push.proto` must print the same streams, labels, timestamps, lines and metadata.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use schema::loki::codec::encode_protobuf;
use schema::loki::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

fn entry(nanos: i64, line: &str, meta: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp::from_nanos(nanos)),
        line: line.into(),
        structured_metadata: meta
            .iter()
            .map(|(n, v)| LabelPairAdapter {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

#[test]
fn protoc_decodes_our_push_request_identically() {
    let push = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: r#"{level="info", service="api"}"#.into(),
                entries: vec![
                    entry(
                        1_767_323_045_123_456_789,
                        "first line",
                        &[("trace_id", "abc123")],
                    ),
                    entry(1_767_323_046_000_000_001, "second line", &[]),
                ],
                hash: 0,
            },
            StreamAdapter {
                labels: r#"{level="error", service="db"}"#.into(),
                entries: vec![entry(1_767_323_047_000_000_000, "third", &[])],
                hash: 0,
            },
        ],
    };
    let snappy = encode_protobuf(&push).unwrap();
    let raw = snap::raw::Decoder::new().decompress_vec(&snappy).unwrap();

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut child = Command::new("protoc")
        .arg(format!("--proto_path={}", fixtures.display()))
        .arg("--proto_path=/usr/include")
        .arg("--decode=logproto.PushRequest")
        .arg("push.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protoc not found: apt-get install -y protobuf-compiler (scripts/test.sh does)");
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "protoc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = r#"streams {
  labels: "{level=\"info\", service=\"api\"}"
  entries {
    timestamp {
      seconds: 1767323045
      nanos: 123456789
    }
    line: "first line"
    structuredMetadata {
      name: "trace_id"
      value: "abc123"
    }
  }
  entries {
    timestamp {
      seconds: 1767323046
      nanos: 1
    }
    line: "second line"
  }
}
streams {
  labels: "{level=\"error\", service=\"db\"}"
  entries {
    timestamp {
      seconds: 1767323047
    }
    line: "third"
  }
}
"#;
    assert_eq!(text, expected);
}
