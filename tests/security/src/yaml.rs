//! Kubernetes manifests and `kubectl kustomize` output read into [`serde_json::Value`]s, one per
//! non-empty document, with serde_yaml_ng (a maintained fork of serde_yaml).

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// Parses every document of `text` (`what` names it in errors). Empty documents are skipped.
pub fn parse_documents(text: &str, what: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| Error::Parse {
            path: what.to_owned(),
            detail: e.to_string(),
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let mut docs = parse_documents(text, "test").expect("parses");
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn reads_nested_mappings_sequences_and_scalars() {
        let v = one(
            "# head\napiVersion: apps/v1\nkind: Deployment   # trailing\nspec:\n  replicas: 2\n  \
             template:\n    spec:\n      containers:\n        - name: a\n          args: [\"run\"]\n          \
             securityContext:\n            runAsNonRoot: true\n            capabilities:\n              \
             drop: [\"ALL\"]\n        - name: b\n      env:\n      - name: X\n        value: 0.0.0.0:8000\n",
        );
        assert_eq!(v["kind"], "Deployment");
        assert_eq!(v["spec"]["replicas"], 2);
        let c = &v["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["name"], "a");
        assert_eq!(c[0]["args"], json!(["run"]));
        assert_eq!(c[0]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            c[0]["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(c[1]["name"], "b");
        assert_eq!(
            v["spec"]["template"]["spec"]["env"],
            json!([{"name": "X", "value": "0.0.0.0:8000"}])
        );
    }

    #[test]
    fn reads_flow_mappings_quotes_and_comments_inside_quotes() {
        let v = one(
            "probe: {path: /healthz, port: http}\nannotations:\n  prometheus.io/port: \"8000\"\n  \
             note: 'a # not a comment'\nlist: [a, 'b', {c: 1}]\n",
        );
        assert_eq!(v["probe"], json!({"path": "/healthz", "port": "http"}));
        assert_eq!(v["annotations"]["prometheus.io/port"], "8000");
        assert_eq!(v["annotations"]["note"], "a # not a comment");
        assert_eq!(v["list"], json!(["a", "b", {"c": 1}]));
    }

    #[test]
    fn reads_block_scalars_and_several_documents() {
        let docs = parse_documents(
            "a: 1\n---\npatch: |-\n  - op: replace\n    path: /x # kept\nafter: true\n---\n# empty\n",
            "test",
        )
        .expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0], json!({"a": 1}));
        assert_eq!(docs[1]["patch"], "- op: replace\n  path: /x # kept");
        assert_eq!(docs[1]["after"], true);
    }

    #[test]
    fn reads_anchors_and_aliases() {
        let v = one("base: &b {user: 65532}\nprod: *b\n");
        assert_eq!(v["prod"], json!({"user": 65532}));
    }

    #[test]
    fn reports_malformed_yaml_with_the_file_and_line() {
        let e = parse_documents("a: 1\nb: [1, 2\n", "f.yaml").expect_err("unclosed");
        let text = e.to_string();
        assert!(text.starts_with("f.yaml: "), "{text}");
        assert!(text.contains("line 2") || text.contains("line 3"), "{text}");
    }
}
