//! A reader of the block-style YAML subset Kubernetes manifests and `kubectl kustomize` output
//! use, into [`serde_json::Value`]: documents separated by `---`, block mappings and sequences
//! (including `- key: value` items), plain, single- and double-quoted scalars, one-line flow
//! collections (`{a: 1, b: [x, y]}`), block scalars (`|`, `|-`, `>`) and comments. Anchors,
//! aliases, tags and multi-line flow collections are not supported and are reported as errors
//! where they would change the structure.
//!
//! The workspace has no YAML crate; this subset is enough for the security checks of
//! `deploy/k8s`, and its tests pin what it reads.

use serde_json::{Map, Number, Value};

use crate::Error;

/// One significant line: its indentation and its text without the comment.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

/// Parses every document of `text` (`what` names it in errors). Empty documents are skipped.
pub fn parse_documents(text: &str, what: &str) -> Result<Vec<Value>, Error> {
    let mut documents = Vec::new();
    let mut current: Vec<(usize, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = strip_comment(raw).trim_end().to_owned();
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            documents.push(std::mem::take(&mut current));
        } else {
            current.push((i + 1, raw));
        }
    }
    documents.push(current);
    let mut out = Vec::new();
    for doc in documents {
        let mut parser = Parser::new(&doc, what);
        if parser.lines.is_empty() {
            continue;
        }
        let indent = parser.lines[0].indent;
        let value = parser.block(indent)?;
        if let Some(line) = parser.lines.get(parser.pos) {
            return Err(parser.error(line.number, "unexpected indentation"));
        }
        out.push(value);
    }
    Ok(out)
}

struct Parser<'a> {
    /// Raw lines of the document (for block scalars).
    raw: &'a [(usize, &'a str)],
    lines: Vec<Line>,
    /// For each significant line, its index in `raw`.
    raw_index: Vec<usize>,
    pos: usize,
    what: &'a str,
}

impl<'a> Parser<'a> {
    fn new(raw: &'a [(usize, &'a str)], what: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut raw_index = Vec::new();
        for (i, (number, text)) in raw.iter().enumerate() {
            let stripped = strip_comment(text).trim_end();
            if stripped.trim().is_empty() {
                continue;
            }
            let indent = stripped.len() - stripped.trim_start().len();
            lines.push(Line {
                number: *number,
                indent,
                text: stripped.trim_start().to_owned(),
            });
            raw_index.push(i);
        }
        Self {
            raw,
            lines,
            raw_index,
            pos: 0,
            what,
        }
    }

    fn error(&self, line: usize, detail: &str) -> Error {
        Error::Parse {
            path: self.what.to_owned(),
            detail: format!("line {line}: {detail}"),
        }
    }

    /// The block (mapping, sequence or scalar) whose lines start at `indent`.
    fn block(&mut self, indent: usize) -> Result<Value, Error> {
        let Some(line) = self.lines.get(self.pos) else {
            return Ok(Value::Null);
        };
        if is_sequence_item(&line.text) {
            self.sequence(indent)
        } else if split_key(&line.text).is_some() {
            self.mapping(indent)
        } else {
            let value = inline(&line.text).map_err(|d| self.error(line.number, &d))?;
            self.pos += 1;
            Ok(value)
        }
    }

    fn sequence(&mut self, indent: usize) -> Result<Value, Error> {
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.pos).cloned() {
            if line.indent != indent || !is_sequence_item(&line.text) {
                break;
            }
            let rest = line.text[1..].trim_start();
            if rest.is_empty() {
                self.pos += 1;
                items.push(self.nested(indent, false)?);
            } else {
                // `- key: value` or `- scalar`: the item's text becomes a line of its own,
                // indented where it starts.
                let offset = line.text.len() - rest.len();
                self.lines[self.pos] = Line {
                    number: line.number,
                    indent: indent + offset,
                    text: rest.to_owned(),
                };
                items.push(self.block(indent + offset)?);
            }
        }
        Ok(Value::Array(items))
    }

    fn mapping(&mut self, indent: usize) -> Result<Value, Error> {
        let mut map = Map::new();
        while let Some(line) = self.lines.get(self.pos).cloned() {
            if line.indent != indent || is_sequence_item(&line.text) {
                break;
            }
            let Some((key, value)) = split_key(&line.text) else {
                return Err(self.error(line.number, "expected `key: value`"));
            };
            let key = unquote(key);
            self.pos += 1;
            let value = if value.is_empty() {
                self.nested(indent, true)?
            } else if value.starts_with('|') || value.starts_with('>') {
                self.block_scalar(indent, value)
            } else if value.starts_with('&') || value.starts_with('*') || value.starts_with('!') {
                return Err(self.error(line.number, "anchors, aliases and tags are not supported"));
            } else {
                inline(value).map_err(|d| self.error(line.number, &d))?
            };
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    /// The value of a key or item with nothing after its `:` or `-`: the deeper block that
    /// follows (a sequence may sit at the key's own indentation), or null.
    fn nested(&mut self, indent: usize, sequence_at_same_indent: bool) -> Result<Value, Error> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => {
                let deeper = next.indent;
                self.block(deeper)
            }
            Some(next)
                if sequence_at_same_indent
                    && next.indent == indent
                    && is_sequence_item(&next.text) =>
            {
                self.sequence(indent)
            }
            _ => Ok(Value::Null),
        }
    }

    /// `|`, `|-`, `>` … : the raw lines more indented than the key.
    fn block_scalar(&mut self, indent: usize, header: &str) -> Value {
        let start_raw = self
            .raw_index
            .get(self.pos.saturating_sub(1))
            .map_or(self.raw.len(), |i| i + 1);
        let mut collected: Vec<&str> = Vec::new();
        let mut end_raw = start_raw;
        for (i, (_, raw)) in self.raw.iter().enumerate().skip(start_raw) {
            let content = raw.trim_start();
            let raw_indent = raw.len() - content.len();
            if !content.is_empty() && raw_indent <= indent {
                break;
            }
            collected.push(raw);
            end_raw = i + 1;
        }
        while self.raw_index.get(self.pos).is_some_and(|&i| i < end_raw) {
            self.pos += 1;
        }
        let block_indent = collected
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let lines: Vec<&str> = collected
            .iter()
            .map(|l| l.get(block_indent..).unwrap_or(""))
            .collect();
        let mut text = if header.starts_with('>') {
            lines.join(" ")
        } else {
            lines.join("\n")
        };
        if !header.contains('-') {
            text.push('\n');
        }
        Value::String(text)
    }
}

fn is_sequence_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Removes a comment: `#` at the start or after whitespace, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return &line[..i],
            None => {}
        }
        previous = c;
    }
    line
}

/// `key: value` (or `key:`) at the first `:` followed by a space or the end, outside quotes
/// and brackets; `None` when the text is not a mapping entry.
fn split_key(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('{') || text.starts_with('[') {
        return None;
    }
    let mut quote: Option<char> = None;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '\'' || c == '"') && i == 0 => quote = Some(c),
            None if c == ':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') => {
                return Some((text[..i].trim(), text[i + 1..].trim()));
            }
            None => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        unescape_double(&s[1..s.len() - 1])
    } else if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else {
        s.to_owned()
    }
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A one-line value: a flow collection or a scalar.
fn inline(text: &str) -> Result<Value, String> {
    let mut flow = Flow {
        chars: text.trim().chars().collect(),
        pos: 0,
    };
    let value = flow.value(false)?;
    flow.skip_spaces();
    if flow.pos != flow.chars.len() {
        return Err(format!("unexpected text after the value in {text:?}"));
    }
    Ok(value)
}

/// A recursive-descent reader of one-line flow values.
struct Flow {
    chars: Vec<char>,
    pos: usize,
}

impl Flow {
    fn skip_spaces(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn value(&mut self, in_flow: bool) -> Result<Value, String> {
        self.skip_spaces();
        match self.chars.get(self.pos) {
            Some('{') => self.mapping(),
            Some('[') => self.sequence(),
            Some('"') | Some('\'') => {
                let s = self.quoted()?;
                Ok(Value::String(s))
            }
            _ => {
                let start = self.pos;
                while let Some(&c) = self.chars.get(self.pos) {
                    if in_flow && matches!(c, ',' | '}' | ']') {
                        break;
                    }
                    if in_flow && c == ':' && self.chars.get(self.pos + 1) == Some(&' ') {
                        break;
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                Ok(plain(text.trim()))
            }
        }
    }

    fn quoted(&mut self) -> Result<String, String> {
        let quote = self.chars[self.pos];
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.chars.len() {
            let c = self.chars[self.pos];
            if quote == '"' && c == '\\' {
                self.pos += 2;
                continue;
            }
            if c == quote {
                if quote == '\'' && self.chars.get(self.pos + 1) == Some(&'\'') {
                    self.pos += 2;
                    continue;
                }
                let raw: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                return Ok(unquote(&format!("{quote}{raw}{quote}")));
            }
            self.pos += 1;
        }
        Err("unterminated quoted string".to_owned())
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_spaces();
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?} in a flow collection"))
        }
    }

    fn mapping(&mut self) -> Result<Value, String> {
        self.expect('{')?;
        let mut map = Map::new();
        loop {
            self.skip_spaces();
            if self.chars.get(self.pos) == Some(&'}') {
                self.pos += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.value(true)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.expect(':')?;
            let value = self.value(true)?;
            map.insert(key, value);
            self.skip_spaces();
            match self.chars.get(self.pos) {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err("expected `,` or `}` in a flow mapping".to_owned()),
            }
        }
    }

    fn sequence(&mut self) -> Result<Value, String> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.chars.get(self.pos) == Some(&']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(true)?);
            self.skip_spaces();
            match self.chars.get(self.pos) {
                Some(',') => self.pos += 1,
                Some(']') => {}
                _ => return Err("expected `,` or `]` in a flow sequence".to_owned()),
            }
        }
    }
}

/// A plain scalar: null, boolean, integer, float or string (YAML 1.2 core schema).
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(n) = text.parse::<i64>() {
                Value::Number(n.into())
            } else if let Some(n) = text
                .parse::<f64>()
                .ok()
                .filter(|_| text.chars().any(|c| c.is_ascii_digit()))
                .and_then(Number::from_f64)
            {
                Value::Number(n)
            } else {
                Value::String(text.to_owned())
            }
        }
    }
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
    fn refuses_anchors_and_reports_the_line() {
        let e = parse_documents("a: &x 1\n", "f.yaml").expect_err("anchor");
        assert!(e.to_string().contains("f.yaml: line 1"), "{e}");
    }
}
