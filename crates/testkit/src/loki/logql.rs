//! LogQL stream selectors with line filters, the LogQL the receiver answers:
//! `{a="x", b!="y", c=~"re", d!~"re"} |= "text" != "other" |~ "re" !~ "re"` (LOKI.md, "Query";
//! the conformance corpus queries `{service_name="unknown_service"} |= "line of …"`). Label
//! regexes are fully anchored and `.` matches newlines, as in Prometheus; a missing label
//! matches as the empty string; line-filter regexes match anywhere in the line, as in Loki.
//! Parsers, other pipeline stages and metric queries are a `parse error` that names what is not
//! supported.

use regex::Regex;
use schema::LabelSet;
use thiserror::Error;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`
    Re,
    /// `!~`
    Nre,
}

/// One `name op "value"` of a selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Whether `value` (empty for a missing label) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Neq, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            // Regex matchers always carry their regex.
            (MatchOp::Re | MatchOp::Nre, None) => false,
        }
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex source.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// A line filter of a query: `|= "text"`, `!= "text"`, `|~ "re"`, `!~ "re"`.
#[derive(Debug, Clone)]
pub enum LineFilter {
    /// `|=`: the line contains the text.
    Contains(String),
    /// `!=`: the line does not contain the text.
    NotContains(String),
    /// `|~`: the regex matches somewhere in the line.
    Matches(Regex),
    /// `!~`: the regex matches nowhere in the line.
    NotMatches(Regex),
}

impl LineFilter {
    /// Whether `line` passes the filter.
    pub fn passes(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(t) => line.contains(t.as_str()),
            LineFilter::NotContains(t) => !line.contains(t.as_str()),
            LineFilter::Matches(re) => re.is_match(line),
            LineFilter::NotMatches(re) => !re.is_match(line),
        }
    }
}

/// A parsed stream selector and its line filters.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<Matcher>,
    line_filters: Vec<LineFilter>,
}

/// A query the receiver cannot answer; Loki's `parse error` texts (400).
#[derive(Debug, Error)]
pub enum LogqlError {
    /// Not a stream selector.
    #[error("parse error at line 1, col {col}: syntax error: {message}")]
    Syntax {
        /// 1-based column.
        col: usize,
        /// What went wrong.
        message: String,
    },
    /// Valid LogQL beyond a stream selector.
    #[error("parse error at line 1, col {col}: {what} are not supported by this test receiver, only stream selectors such as {{service=\"api\"}}")]
    Unsupported {
        /// 1-based column.
        col: usize,
        /// What is not supported.
        what: &'static str,
    },
    /// A regex that does not compile.
    #[error("parse error at line 1, col {col}: invalid regex {value:?}: {error}")]
    Regex {
        /// 1-based column.
        col: usize,
        /// The regex.
        value: String,
        /// Why it does not compile.
        error: Box<regex::Error>,
    },
    /// Every matcher also matches the empty string, so the query would select every stream.
    #[error("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will")]
    EmptyCompatible,
}

impl Selector {
    /// Parses a stream selector.
    pub fn parse(query: &str) -> Result<Self, LogqlError> {
        let mut p = Parser {
            s: query,
            b: query.as_bytes(),
            i: 0,
        };
        p.skip_spaces();
        if p.peek() != Some(b'{') {
            if p.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                let start = p.i;
                let word = p.identifier();
                p.skip_spaces();
                if p.peek() == Some(b'(') || is_aggregation(word) {
                    return Err(LogqlError::Unsupported {
                        col: start + 1,
                        what: "metric queries",
                    });
                }
                p.i = start;
            }
            return Err(p.unexpected("expecting {"));
        }
        p.i += 1;
        let mut matchers = Vec::new();
        loop {
            p.skip_spaces();
            let col = p.i + 1;
            let name = p.identifier();
            if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                return Err(p.unexpected("expecting IDENTIFIER"));
            }
            let name = name.to_owned();
            p.skip_spaces();
            let op = match (p.peek(), p.b.get(p.i + 1)) {
                (Some(b'='), Some(b'~')) => MatchOp::Re,
                (Some(b'='), _) => MatchOp::Eq,
                (Some(b'!'), Some(b'=')) => MatchOp::Neq,
                (Some(b'!'), Some(b'~')) => MatchOp::Nre,
                _ => return Err(p.unexpected("expecting = or != or =~ or !~")),
            };
            p.i += if op == MatchOp::Eq { 1 } else { 2 };
            p.skip_spaces();
            let value = p.string()?;
            let regex = match op {
                MatchOp::Re | MatchOp::Nre => Some(
                    Regex::new(&format!("^(?s:{value})$")).map_err(|e| LogqlError::Regex {
                        col,
                        value: value.clone(),
                        error: Box::new(e),
                    })?,
                ),
                MatchOp::Eq | MatchOp::Neq => None,
            };
            matchers.push(Matcher {
                name,
                op,
                value,
                regex,
            });
            p.skip_spaces();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(p.unexpected("expecting , or }")),
            }
        }
        let mut line_filters = Vec::new();
        loop {
            p.skip_spaces();
            let col = p.i + 1;
            let op = match (p.peek(), p.b.get(p.i + 1)) {
                (None, _) => break,
                (Some(b'|'), Some(b'=')) => "|=",
                (Some(b'|'), Some(b'~')) => "|~",
                (Some(b'!'), Some(b'=')) => "!=",
                (Some(b'!'), Some(b'~')) => "!~",
                (Some(b'|'), _) => {
                    return Err(LogqlError::Unsupported {
                        col,
                        what: "parsers and other pipeline stages",
                    })
                }
                (Some(b'['), _) => {
                    return Err(LogqlError::Unsupported {
                        col,
                        what: "range vectors (metric queries)",
                    })
                }
                _ => return Err(p.unexpected("expecting end of query")),
            };
            p.i += 2;
            p.skip_spaces();
            let value = p.string()?;
            let regex = |value: &str| {
                Regex::new(&format!("(?s:{value})")).map_err(|e| LogqlError::Regex {
                    col,
                    value: value.to_owned(),
                    error: Box::new(e),
                })
            };
            line_filters.push(match op {
                "|=" => LineFilter::Contains(value),
                "!=" => LineFilter::NotContains(value),
                "|~" => LineFilter::Matches(regex(&value)?),
                _ => LineFilter::NotMatches(regex(&value)?),
            });
        }
        let selective = matchers
            .iter()
            .any(|m| matches!(m.op, MatchOp::Eq | MatchOp::Re) && !m.matches_value(""));
        if !selective {
            return Err(LogqlError::EmptyCompatible);
        }
        Ok(Self {
            matchers,
            line_filters,
        })
    }

    /// Whether a stream with these labels is selected.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches_value(labels.get(&m.name).unwrap_or("")))
    }

    /// Whether a line passes every line filter.
    pub fn matches_line(&self, line: &str) -> bool {
        self.line_filters.iter().all(|f| f.passes(line))
    }

    /// The matchers.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    /// The line filters.
    pub fn line_filters(&self) -> &[LineFilter] {
        &self.line_filters
    }
}

fn is_aggregation(word: &str) -> bool {
    matches!(
        word,
        "sum" | "avg" | "min" | "max" | "count" | "topk" | "bottomk" | "stddev" | "stdvar"
    ) || word.ends_with("_over_time")
        || matches!(word, "rate" | "bytes_rate" | "absent_over_time" | "vector")
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn identifier(&mut self) -> &'a str {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn unexpected(&self, expecting: &str) -> LogqlError {
        let found = match self.s[self.i..].chars().next() {
            None => "end of input".to_owned(),
            Some(c) => format!("{c}"),
        };
        LogqlError::Syntax {
            col: self.i + 1,
            message: format!("unexpected {found}, {expecting}"),
        }
    }

    /// A `"…"` string with Go escapes, or a `` `…` `` raw string.
    fn string(&mut self) -> Result<String, LogqlError> {
        let start = self.i;
        match self.peek() {
            Some(b'`') => {
                let rest = &self.s[start + 1..];
                match rest.find('`') {
                    Some(len) => {
                        self.i = start + 1 + len + 1;
                        Ok(rest[..len].to_owned())
                    }
                    None => Err(self.unterminated(start)),
                }
            }
            Some(b'"') => {
                let mut j = start + 1;
                loop {
                    match self.b.get(j) {
                        None => return Err(self.unterminated(start)),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                self.i = j + 1;
                // The escapes of a LogQL string are those of a label value: let the schema's
                // label parser unquote it.
                let quoted = &self.s[start..=j];
                LabelSet::parse(&format!("{{v={quoted}}}"))
                    .ok()
                    .and_then(|set| set.get("v").map(str::to_owned))
                    .ok_or_else(|| LogqlError::Syntax {
                        col: start + 1,
                        message: format!("invalid quoted string {quoted}"),
                    })
            }
            _ => Err(self.unexpected("expecting STRING")),
        }
    }

    fn unterminated(&self, start: usize) -> LogqlError {
        LogqlError::Syntax {
            col: start + 1,
            message: "unterminated string".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        LabelSet::from_pairs(pairs.iter().copied())
    }

    fn selects(query: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(query).unwrap().matches(&labels(pairs))
    }

    #[test]
    fn matches_each_operator() {
        let api = [("service", "api"), ("level", "info")];
        assert!(selects(r#"{service="api"}"#, &api));
        assert!(!selects(r#"{service="web"}"#, &api));
        assert!(selects(r#"{service="api", level!="error"}"#, &api));
        assert!(!selects(r#"{service="api", level!="info"}"#, &api));
        assert!(selects(r#"{service=~"a.*"}"#, &api));
        assert!(selects(r#"{service=~`a.*|b`, level!~"err.*"}"#, &api));
        assert!(!selects(r#"{service=~"a.*", level!~"in.*"}"#, &api));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        assert!(!selects(r#"{service=~"pi"}"#, &[("service", "api")]));
        assert!(!selects(r#"{service=~"ap"}"#, &[("service", "api")]));
        assert!(selects(r#"{service=~"ap|api"}"#, &[("service", "api")]));
    }

    #[test]
    fn a_missing_label_matches_as_empty() {
        assert!(selects(r#"{service="api", env=""}"#, &[("service", "api")]));
        assert!(selects(
            r#"{service="api", env!="prod"}"#,
            &[("service", "api")]
        ));
    }

    #[test]
    fn unescapes_values() {
        assert!(selects(r#"{m="a\"b\\c"}"#, &[("m", "a\"b\\c")]));
    }

    #[test]
    fn applies_line_filters() {
        let s = Selector::parse(r#"{a="b"} |= "line of x" != "skip" |~ "o+f" !~ `^z`"#).unwrap();
        assert!(s.matches_line("a line of x"));
        assert!(!s.matches_line("a line of x, skip"));
        assert!(!s.matches_line("zz line of x"));
        assert!(!s.matches_line("other"));
    }

    #[test]
    fn rejects_parsers_and_metric_queries_by_name() {
        for (q, what) in [
            (r#"{a="b"} | json"#, "pipeline stages"),
            (r#"{a="b"} |= "x" | logfmt"#, "pipeline stages"),
            (r#"rate({a="b"}[5m])"#, "metric queries"),
            (
                r#"sum by (a) (count_over_time({a="b"}[1m]))"#,
                "metric queries",
            ),
        ] {
            let e = Selector::parse(q).unwrap_err().to_string();
            assert!(e.starts_with("parse error"), "{e}");
            assert!(e.contains(what), "{q}: {e}");
        }
    }

    #[test]
    fn rejects_malformed_and_unselective_selectors() {
        for q in [
            "",
            "{}",
            r#"{a="b""#,
            r#"{a=b}"#,
            r#"{a="b",}"#,
            r#"{1a="b"}"#,
            "{a=~\"(\"}",
        ] {
            assert!(Selector::parse(q).is_err(), "{q}");
        }
        for q in [r#"{a=~".*"}"#, r#"{a!="x"}"#, r#"{a=""}"#] {
            assert!(matches!(
                Selector::parse(q),
                Err(LogqlError::EmptyCompatible)
            ));
        }
    }
}
