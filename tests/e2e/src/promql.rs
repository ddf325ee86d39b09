//! A small PromQL-aware tokenizer that finds the metric names an expression selects
//! (<https://prometheus.io/docs/prometheus/2.42/querying/basics/>): identifiers that are not
//! function or aggregation names (followed by `(`), not keywords (`by`, `without`, `on`,
//! `ignoring`, `group_left`, `group_right`, `bool`, `offset`, `and`, `or`, `unless`, …), not
//! label names inside `{…}` or grouping lists (`by (…)`), not inside strings, range brackets,
//! numbers and durations, or Grafana template variables (`$var`, `${var}`, `[[var]]`). A
//! `{__name__="x"}` matcher names `x` too.
//!
//! It does not validate syntax: Prometheus does that when the expression runs.

use std::collections::BTreeSet;

/// Keywords that may precede a parenthesised label list, which is then skipped.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other keywords (compared case-insensitively: `Inf`, `NaN`, `AND` are valid).
const KEYWORDS: [&str; 10] = [
    "bool", "offset", "and", "or", "unless", "atan2", "inf", "nan", "start", "end",
];

/// Aggregation operators: keywords whether or not a `(` follows (`sum by (x) (…)`).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names `expr` selects, sorted.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => i = skip_while(&chars, i, |c| c != '\n'),
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => {
                let end = closing(&chars, i, '{', '}');
                names.extend(name_matchers(
                    &chars[i + 1..end.saturating_sub(1).max(i + 1)],
                ));
                i = end;
            }
            '[' => i = closing(&chars, i, '[', ']'),
            '$' => i = skip_variable(&chars, i),
            c if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, i)) => {
                // A number or a duration (`5m`, `1h30m`, `1e-3` stops at `-`, harmlessly).
                i = skip_while(&chars, i, |c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '.'
                });
            }
            c if is_ident_start(c) => {
                let end = skip_while(&chars, i, is_ident_char);
                let ident: String = chars[i..end].iter().collect();
                let next = skip_while(&chars, end, char::is_whitespace);
                let paren_follows = chars.get(next) == Some(&'(');
                i = end;
                if GROUPING.contains(&ident.as_str()) {
                    if paren_follows {
                        i = closing(&chars, next, '(', ')');
                    }
                } else if KEYWORDS.contains(&ident.to_ascii_lowercase().as_str())
                    || AGGREGATIONS.contains(&ident.as_str())
                    || paren_follows
                {
                    // A keyword, an aggregation or a function call.
                } else {
                    names.insert(ident);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

/// The index of the first char from `i` on that does not satisfy `keep`.
fn skip_while(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < chars.len() && keep(chars[i]) {
        i += 1;
    }
    i
}

/// `chars[start]` opens a string; returns the index after its closing quote (backslash escapes
/// except in raw `` ` `` strings).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// `chars[start]` is `open`; returns the index after the matching `close`, skipping strings and
/// nested pairs (the end of input when unbalanced).
fn closing(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// `chars[start]` is `$`: skips a Grafana variable (`$name` or `${name…}`).
fn skip_variable(chars: &[char], start: usize) -> usize {
    if chars.get(start + 1) == Some(&'{') {
        closing(chars, start + 1, '{', '}')
    } else {
        skip_while(chars, start + 1, |c| c.is_ascii_alphanumeric() || c == '_')
    }
}

/// The values of `__name__="…"` matchers among label matchers (the text between braces).
fn name_matchers(matchers: &[char]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < matchers.len() {
        let c = matchers[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(matchers, i);
            continue;
        }
        if !is_ident_start(c) {
            i += 1;
            continue;
        }
        let end = skip_while(matchers, i, is_ident_char);
        let label: String = matchers[i..end].iter().collect();
        i = end;
        if label != "__name__" {
            continue;
        }
        let op = skip_while(matchers, i, char::is_whitespace);
        // Only `=`: `!=`, `=~` and `!~` do not name one metric.
        if matchers.get(op) != Some(&'=') || matchers.get(op + 1) == Some(&'~') {
            continue;
        }
        let value = skip_while(matchers, op + 1, char::is_whitespace);
        if let Some(&quote) = matchers
            .get(value)
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        {
            let end = skip_string(matchers, value);
            let text: String = matchers[value + 1..end.saturating_sub(1).max(value + 1)]
                .iter()
                .collect();
            if matchers.get(end.saturating_sub(1)) == Some(&quote) {
                names.push(text);
            }
            i = end;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn finds_a_bare_metric_and_one_with_matchers() {
        assert_eq!(names("up"), ["up"]);
        assert_eq!(names(r#"up{job="producer", instance=~".+"}"#), ["up"]);
        assert_eq!(
            names("process_cpu_seconds_total{}"),
            ["process_cpu_seconds_total"]
        );
    }

    #[test]
    fn skips_functions_and_aggregations_with_or_without_grouping() {
        assert_eq!(
            names("sum by (le) (rate(loki_push_duration_seconds_bucket[5m]))"),
            ["loki_push_duration_seconds_bucket"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, sum(rate(x_bucket[$__rate_interval])) by (le, job))"),
            ["x_bucket"]
        );
        assert_eq!(names("sum without(instance)(a) / count (b)"), ["a", "b"]);
        assert_eq!(names("topk(5, a) or bottomk by (x) (3, b)"), ["a", "b"]);
        assert_eq!(names(r#"count_values("v", build_info)"#), ["build_info"]);
    }

    #[test]
    fn label_names_in_matchers_and_grouping_lists_are_not_metrics() {
        assert_eq!(
            names(
                r#"sum by (service, stage, reason) (rate(ingestion_errors_total{stage!="x"}[5m]))"#
            ),
            ["ingestion_errors_total"]
        );
        assert_eq!(
            names("a * on (instance, job) group_left (version) b"),
            ["a", "b"]
        );
        assert_eq!(names("a / ignoring(reason) group_right b"), ["a", "b"]);
    }

    #[test]
    fn keywords_numbers_durations_and_strings_are_not_metrics() {
        assert_eq!(
            names("a > bool 0.5 and b offset 5m unless c @ start() or d == Inf != NaN"),
            ["a", "b", "c", "d"]
        );
        assert_eq!(names("a offset -1h30m + 1e3 + 0x1f + .5"), ["a"]);
        assert_eq!(
            names(r#"label_replace(up, "dst", "$1 not_a_metric", "src", "(.*)")"#),
            ["up"]
        );
        assert_eq!(
            names("a[5m:1m] + b[1h] # c is a comment\n + d"),
            ["a", "b", "d"]
        );
        assert_eq!(names("atan2 > absent(x) AND y"), ["x", "y"]);
    }

    #[test]
    fn recording_rule_names_with_colons_are_metrics() {
        assert_eq!(names("job:requests:rate5m > 0"), ["job:requests:rate5m"]);
    }

    #[test]
    fn the_name_label_matcher_names_a_metric() {
        assert_eq!(names(r#"{__name__="a", job="x"}"#), ["a"]);
        assert_eq!(
            names(r#"{__name__ = 'b'} + c{__name__=~"d.*"}"#),
            ["b", "c"]
        );
    }

    #[test]
    fn grafana_variables_are_not_metrics() {
        assert_eq!(
            names(
                r#"rate(a{job=~"$job"}[$__rate_interval]) + b[${__range}] * $factor + c[[[interval]]]"#
            ),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn multi_line_expressions_and_unbalanced_input_do_not_panic() {
        assert_eq!(
            names("(\n  sum(rate(a[5m]))\n  /\n  sum(rate(b[5m]))\n) > 0.1\nor\nmax(c) == 1"),
            ["a", "b", "c"]
        );
        assert_eq!(names("sum(rate(a[5m]"), ["a"]);
        assert_eq!(names(r#"a{job="x"#), ["a"]);
        assert!(names("").is_empty());
        assert!(names("1 + 2").is_empty());
    }
}
