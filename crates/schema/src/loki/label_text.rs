//! Loki's label-set text, read and written exactly as Loki does (LOKI.md, "Request"; the corpus
//! in `loki-conformance/`): a stream's `labels` string is parsed by Prometheus' metric parser
//! (`syntax.ParseLabels`), and label sets are written back by Prometheus' `labels.String()`.
//! A JSON push's `stream` object is first pasted into such a text with its names *unquoted*
//! (`loghttp.LabelSet.String()`), which is how `{"x=\"1\", injected": "2"}` becomes two labels.
//!
//! The parser keeps Loki's quirks on purpose, so that tests against it mean something against a
//! real Loki: a metric name before the braces becomes `__name__`; quoted names (`{"a.b"="c"}`)
//! are accepted; labels with an empty value are dropped; repeated names are kept (Loki's
//! validation rejects them later); the error texts and `line:column` positions are Loki's
//! (`1:5: parse error: unexpected character inside braces: '-'`).

use thiserror::Error;

use crate::labels::is_valid_label_name;

/// A label text Loki cannot parse (the push is refused as a whole with
/// `couldn't parse labels: <this>`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{line}:{column}: parse error: {message}")]
pub struct LabelTextError {
    /// 1-based line of the error (lines are counted at `\n`).
    pub line: usize,
    /// 1-based byte column of the error within its line.
    pub column: usize,
    /// What is wrong, in Prometheus' words.
    pub message: String,
}

impl LabelTextError {
    fn at(text: &str, pos: usize, message: String) -> Self {
        let pos = pos.min(text.len());
        let mut line = 1;
        let mut last_break: isize = -1;
        for (i, b) in text.as_bytes()[..pos].iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                last_break = i as isize;
            }
        }
        Self {
            line,
            column: (pos as isize - last_break) as usize,
            message,
        }
    }
}

/// Parses a label text as Loki's `syntax.ParseLabels` does: pairs sorted by name (stable, so
/// repeated names keep their order), labels with an empty value dropped, a leading metric name
/// as `__name__`. An empty text is the empty set.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, LabelTextError> {
    let tokens = lex(text)?;
    let mut pairs = Parser {
        text,
        tokens: &tokens,
        i: 0,
    }
    .metric()?;
    pairs.retain(|(_, v)| !v.is_empty());
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs)
}

/// Writes pairs as Prometheus' `labels.String()` does: `{a="1", b="2"}` in the given order,
/// values quoted as Go's `strconv.Quote`, names that are not `[a-zA-Z_][a-zA-Z0-9_]*` quoted too
/// (so any name survives a round trip through [`parse`]).
pub fn render<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::with_capacity(2 + pairs.len() * 16);
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if is_valid_label_name(k.as_ref()) {
            out.push_str(k.as_ref());
        } else {
            go_quote_into(&mut out, k.as_ref());
        }
        out.push('=');
        go_quote_into(&mut out, v.as_ref());
    }
    out.push('}');
    out
}

/// Writes pairs with every name unquoted, as Loki's query path prints a stream before parsing it
/// again: for a name that is not `[a-zA-Z_][a-zA-Z0-9_]*` the result does not parse (which is why
/// a stream pushed with `{"a.b"="c"}` can never be queried).
pub fn render_unquoted_names<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    out.push('{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k.as_ref());
        out.push('=');
        go_quote_into(&mut out, v.as_ref());
    }
    out.push('}');
    out
}

/// The label text Loki builds from a JSON push's `stream` object (`loghttp.LabelSet.String()`):
/// names sorted and pasted **unquoted**, values Go-quoted, separated by `", "`. A name repeated
/// in the object keeps its last value. Whatever characters a name holds end up in the text as
/// they are, so a hostile name can add labels or make the whole push fail.
pub fn json_stream_text<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let map: std::collections::BTreeMap<&str, &str> = pairs.into_iter().collect();
    let mut out = String::new();
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        go_quote_into(&mut out, v);
    }
    out.push('}');
    out
}

/// Go's `strconv.Quote`: `"` and `\` escaped, printable characters as they are, the others as
/// `\a \b \f \n \r \t \v`, `\xHH` (ASCII controls) or `\uHHHH` / `\UHHHHHHHH`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(&mut out, s);
    out
}

fn go_quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        push_escaped(out, c, '"');
    }
    out.push('"');
}

/// Go's `%q` of a single character (`'-'`, `'\n'`, `'\u00a0'`).
pub fn go_quote_char(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if go_is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and
/// the ASCII space): control characters, every other space, format characters and private-use
/// characters are not printable. `U+FFFD` is printable, as in Go.
pub fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD
        | 0xFFFE | 0xFFFF)
}

// ------------------------------------------------------------------------------------------
// Lexer: Prometheus' `lexStatements` / `lexInsideBraces` / `lexString`, reduced to what a
// metric text can hold.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A name; outside braces it may hold `:` (a metric name).
    Ident(String),
    /// A quoted string, already unquoted.
    Str(String),
    LeftBrace,
    RightBrace,
    Comma,
    Eq,
    /// `!=`, `=~` or `!~`: valid LogQL, but not in a label set.
    Op(&'static str),
    /// Anything else outside braces (a number, an operator…).
    Other(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
    /// The source text of the token, for error messages.
    src: String,
}

fn lex(text: &str) -> Result<Vec<Token>, LabelTextError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut inside = false;
    let err = |pos: usize, message: String| Err(LabelTextError::at(text, pos, message));
    while i < b.len() {
        let c = text[i..].chars().next().unwrap_or('\u{fffd}');
        let start = i;
        if is_space(c) {
            i += c.len_utf8();
            continue;
        }
        if c == '#' {
            // A line comment runs to the end of the line.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let push = |out: &mut Vec<Token>, tok: Tok, end: usize| {
            out.push(Token {
                tok,
                pos: start,
                src: text[start..end].to_owned(),
            });
        };
        if inside {
            match c {
                c if is_alpha(c) => {
                    i += 1;
                    while i < b.len() && (is_alpha(b[i] as char) || b[i].is_ascii_digit()) {
                        i += 1;
                    }
                    push(&mut out, Tok::Ident(text[start..i].to_owned()), i);
                }
                ',' => {
                    i += 1;
                    push(&mut out, Tok::Comma, i);
                }
                '"' | '\'' | '`' => {
                    let (value, end) = lex_string(text, start, c)?;
                    i = end;
                    push(&mut out, Tok::Str(value), i);
                }
                '=' => {
                    if b.get(i + 1) == Some(&b'~') {
                        i += 2;
                        push(&mut out, Tok::Op("=~"), i);
                    } else {
                        i += 1;
                        push(&mut out, Tok::Eq, i);
                    }
                }
                '!' => match b.get(i + 1) {
                    Some(b'~') => {
                        i += 2;
                        push(&mut out, Tok::Op("!~"), i);
                    }
                    Some(b'=') => {
                        i += 2;
                        push(&mut out, Tok::Op("!="), i);
                    }
                    _ => {
                        let next = text[i + 1..].chars().next();
                        let shown = next.map_or_else(|| "EOF".to_owned(), go_quote_char);
                        return err(
                            start,
                            format!("unexpected character after '!' inside braces: {shown}"),
                        );
                    }
                },
                '{' => return err(start, format!("unexpected left brace {}", go_quote_char(c))),
                '}' => {
                    i += 1;
                    inside = false;
                    push(&mut out, Tok::RightBrace, i);
                }
                c => {
                    return err(
                        start,
                        format!("unexpected character inside braces: {}", go_quote_char(c)),
                    )
                }
            }
        } else {
            match c {
                c if is_alpha(c) || c == ':' => {
                    i += 1;
                    while i < b.len()
                        && (is_alpha(b[i] as char) || b[i].is_ascii_digit() || b[i] == b':')
                    {
                        i += 1;
                    }
                    push(&mut out, Tok::Ident(text[start..i].to_owned()), i);
                }
                '{' => {
                    i += 1;
                    inside = true;
                    push(&mut out, Tok::LeftBrace, i);
                }
                '}' => {
                    return err(
                        start,
                        format!("unexpected right brace {}", go_quote_char(c)),
                    )
                }
                '"' | '\'' | '`' => {
                    let (value, end) = lex_string(text, start, c)?;
                    i = end;
                    push(&mut out, Tok::Str(value), i);
                }
                c => {
                    // Numbers, operators and the like: a token the metric grammar refuses.
                    i += c.len_utf8();
                    while i < b.len() && !b[i].is_ascii_whitespace() && !b"{}\"'`".contains(&b[i]) {
                        i += 1;
                    }
                    while !text.is_char_boundary(i) {
                        i += 1;
                    }
                    push(&mut out, Tok::Other(text[start..i].to_owned()), i);
                }
            }
        }
    }
    if inside {
        return err(b.len(), "unexpected end of input inside braces".to_owned());
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: b.len(),
        src: String::new(),
    });
    Ok(out)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

/// Lexes and unquotes a string starting at `start` (its opening quote); returns the value and
/// the index after the closing quote. Errors sit at the opening quote, as Prometheus puts them.
fn lex_string(text: &str, start: usize, quote: char) -> Result<(String, usize), LabelTextError> {
    let err = |message: &str| Err(LabelTextError::at(text, start, message.to_owned()));
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = text[start + 1..].char_indices();
    if quote == '`' {
        for (off, c) in chars {
            match c {
                '`' => return Ok((lossy(bytes), start + 1 + off + 1)),
                '\u{fffd}' => return err("invalid UTF-8 rune"),
                c => push_char(&mut bytes, c),
            }
        }
        return err("unterminated raw string");
    }
    while let Some((off, c)) = chars.next() {
        match c {
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    return err("escape sequence not terminated");
                };
                let (digits, base, max): (usize, u32, u32) = match e {
                    'a' => {
                        bytes.push(7);
                        continue;
                    }
                    'b' => {
                        bytes.push(8);
                        continue;
                    }
                    'f' => {
                        bytes.push(12);
                        continue;
                    }
                    'n' => {
                        bytes.push(b'\n');
                        continue;
                    }
                    'r' => {
                        bytes.push(b'\r');
                        continue;
                    }
                    't' => {
                        bytes.push(b'\t');
                        continue;
                    }
                    'v' => {
                        bytes.push(11);
                        continue;
                    }
                    '\\' => {
                        bytes.push(b'\\');
                        continue;
                    }
                    e if e == quote => {
                        push_char(&mut bytes, e);
                        continue;
                    }
                    '0'..='7' => (3, 8, 255),
                    'x' => (2, 16, 255),
                    'u' => (4, 16, 0x10FFFF),
                    'U' => (8, 16, 0x10FFFF),
                    other => {
                        return Err(LabelTextError::at(
                            text,
                            start,
                            format!("unknown escape sequence {}", go_sharp_u(other)),
                        ))
                    }
                };
                let mut x: u32 = 0;
                let mut first = matches!(e, '0'..='7').then_some(e);
                for _ in 0..digits {
                    let d = match first.take() {
                        Some(d) => d,
                        None => match chars.next() {
                            Some((_, d)) => d,
                            None => return err("escape sequence not terminated"),
                        },
                    };
                    let Some(v) = d.to_digit(16).filter(|v| *v < base) else {
                        return Err(LabelTextError::at(
                            text,
                            start,
                            format!("illegal character {} in escape sequence", go_sharp_u(d)),
                        ));
                    };
                    x = x * base + v;
                }
                if x > max || (0xD800..0xE000).contains(&x) {
                    return err("escape sequence is an invalid Unicode code point");
                }
                if matches!(e, 'u' | 'U') {
                    match char::from_u32(x) {
                        Some(c) => push_char(&mut bytes, c),
                        None => return err("escape sequence is an invalid Unicode code point"),
                    }
                } else {
                    // Octal and \x escapes are single bytes, as in Go.
                    bytes.push(x as u8);
                }
            }
            '\u{fffd}' => return err("invalid UTF-8 rune"),
            '\n' => return err("unterminated quoted string"),
            c if c == quote => return Ok((lossy(bytes), start + 1 + off + 1)),
            c => push_char(&mut bytes, c),
        }
    }
    err("unterminated quoted string")
}

fn push_char(bytes: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn lossy(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => go_lossy(e.as_bytes()),
    }
}

/// Bytes as Go's JSON output shows them: valid UTF-8 as it is, every byte of an invalid
/// sequence replaced by `U+FFFD` (Rust's `from_utf8_lossy` replaces a whole sequence by one).
pub fn go_lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction.
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let n = e.error_len().unwrap_or(bad.len());
                for _ in 0..n {
                    out.push('\u{fffd}');
                }
                rest = &bad[n..];
            }
        }
    }
}

/// Go's `%#U`: `U+0071 'q'`.
fn go_sharp_u(c: char) -> String {
    if go_is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

// ------------------------------------------------------------------------------------------
// Parser: the `metric` rule of Prometheus' grammar.

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn unexpected(&self, t: &Token, context: &str, expected: &str) -> LabelTextError {
        let what = match &t.tok {
            Tok::Eof => "end of input".to_owned(),
            Tok::Ident(s) => format!("identifier {}", go_quote(s)),
            Tok::Str(_) => format!("string {}", go_quote(&t.src)),
            Tok::Other(s) => go_quote(s),
            _ => go_quote(&t.src),
        };
        let mut message = format!("unexpected {what}");
        if !context.is_empty() {
            message.push_str(" in ");
            message.push_str(context);
        }
        if !expected.is_empty() {
            message.push_str(", expected ");
            message.push_str(expected);
        }
        LabelTextError::at(self.text, t.pos, message)
    }

    fn metric(&mut self) -> Result<Vec<(String, String)>, LabelTextError> {
        let mut pairs = Vec::new();
        if let Tok::Ident(name) = &self.peek().tok {
            pairs.push(("__name__".to_owned(), name.clone()));
            self.i += 1;
        }
        match self.peek().tok {
            Tok::LeftBrace => {
                self.i += 1;
                self.label_set(&mut pairs)?;
            }
            Tok::Eof => {}
            _ => {
                let t = self.peek().clone();
                return Err(self.unexpected(&t, "", ""));
            }
        }
        let t = self.next();
        if t.tok != Tok::Eof {
            return Err(self.unexpected(&t, "", ""));
        }
        Ok(pairs)
    }

    fn label_set(&mut self, pairs: &mut Vec<(String, String)>) -> Result<(), LabelTextError> {
        if self.peek().tok == Tok::RightBrace {
            self.i += 1;
            return Ok(());
        }
        loop {
            let t = self.next();
            let name = match t.tok {
                Tok::Ident(ref n) => n.clone(),
                Tok::Str(ref n) => {
                    // A lone quoted string is the metric name (`{"metric", a="b"}`).
                    if matches!(self.peek().tok, Tok::Comma | Tok::RightBrace) {
                        pairs.push(("__name__".to_owned(), n.clone()));
                        if self.after_item()? {
                            return Ok(());
                        }
                        continue;
                    }
                    n.clone()
                }
                _ => return Err(self.unexpected(&t, "label set", "identifier or \"}\"")),
            };
            let eq = self.next();
            if eq.tok != Tok::Eq {
                return Err(self.unexpected(&eq, "label set", "\"=\""));
            }
            let value = self.next();
            let Tok::Str(value) = value.tok else {
                return Err(self.unexpected(&value, "label set", "string"));
            };
            pairs.push((name, value));
            if self.after_item()? {
                return Ok(());
            }
        }
    }

    /// After an item: `,` (then `}` may close, as a trailing comma), or `}`. True when closed.
    fn after_item(&mut self) -> Result<bool, LabelTextError> {
        let t = self.next();
        match t.tok {
            Tok::RightBrace => Ok(true),
            Tok::Comma => {
                if self.peek().tok == Tok::RightBrace {
                    self.i += 1;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Err(self.unexpected(&t, "label set", "\",\" or \"}\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_sorted_pairs_with_go_escapes() {
        assert_eq!(
            pairs(r#"{case="x", v="q\"b\\n\nt"}"#),
            p(&[("case", "x"), ("v", "q\"b\\n\nt")])
        );
        assert_eq!(
            pairs(r#"{b='2', a=`1\n`}"#),
            p(&[("a", "1\\n"), ("b", "2")])
        );
        assert_eq!(pairs(r#"{a="\u00e9\x41\101"}"#), p(&[("a", "éAA")]));
    }

    #[test]
    fn an_empty_text_and_empty_braces_are_the_empty_set() {
        assert!(pairs("").is_empty());
        assert!(pairs("{}").is_empty());
        assert!(pairs(" { } ").is_empty());
    }

    #[test]
    fn keeps_lokis_quirks() {
        assert_eq!(
            pairs(r#"metricname{case="m"}"#),
            p(&[("__name__", "metricname"), ("case", "m")])
        );
        assert_eq!(pairs(r#"{"a.b"="c"}"#), p(&[("a.b", "c")]));
        assert_eq!(pairs(r#"{a="", b="2"}"#), p(&[("b", "2")]));
        assert_eq!(
            pairs(r#"{s="x", a="1", a="2"}"#),
            p(&[("a", "1"), ("a", "2"), ("s", "x")])
        );
        assert_eq!(pairs(r#"{a="1",}"#), p(&[("a", "1")]));
    }

    #[test]
    fn errors_have_lokis_text_and_position() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e(r#"{bad-name="x", case="c", s="bad"}"#),
            "1:5: parse error: unexpected character inside braces: '-'"
        );
        assert_eq!(
            e(r#"{case="json-label-name-dot", foo.bar="x"}"#),
            "1:33: parse error: unexpected character inside braces: '.'"
        );
        assert_eq!(
            e(r#"{1abc="x", case="c"}"#),
            "1:2: parse error: unexpected character inside braces: '1'"
        );
        assert_eq!(
            e("{case=\"pb-labels-literal-newline\", v=\"a\nb\"}"),
            "1:38: parse error: unterminated quoted string"
        );
        assert_eq!(
            e("{a=\"\u{fffd}\"}"),
            "1:4: parse error: invalid UTF-8 rune"
        );
        assert!(e(r#"{a="\q"}"#).contains("unknown escape sequence U+0071 'q'"));
        assert!(e(r#"{a!="b"}"#).contains("unexpected \"!=\" in label set, expected \"=\""));
        assert!(e(r#"{a="b" c="d"}"#).contains("expected \",\" or \"}\""));
        assert!(e(r#"{a="b""#).contains("unexpected end of input inside braces"));
    }

    #[test]
    fn renders_as_prometheus_and_round_trips() {
        let set = p(&[("a.b", "c"), ("v", "q\"b\\\n\u{fffd}\u{a0}é")]);
        let text = render(&set);
        assert_eq!(text, r#"{"a.b"="c", v="q\"b\\\n�\u00a0é"}"#);
        // U+FFFD is printable for Go, and Prometheus' lexer refuses it raw: Loki's own rendering
        // of such a value does not parse. The receiver copies that.
        assert!(parse(&text).is_err());
        let safe = p(&[("a.b", "c"), ("v", "q\"b\\\n\u{a0}é\t\u{1}")]);
        assert_eq!(parse(&render(&safe)).unwrap(), safe);
    }

    #[test]
    fn json_stream_text_pastes_names_unquoted() {
        let text = json_stream_text([("case", "j"), ("x=\"1\", injected", "2")]);
        assert_eq!(text, r#"{case="j", x="1", injected="2"}"#);
        assert_eq!(
            parse(&text).unwrap(),
            p(&[("case", "j"), ("injected", "2"), ("x", "1")])
        );
        assert_eq!(render_unquoted_names(&p(&[("a.b", "c")])), r#"{a.b="c"}"#);
    }

    #[test]
    fn go_lossy_replaces_every_invalid_byte() {
        assert_eq!(go_lossy(b"bad \xff\xfe utf8"), "bad \u{fffd}\u{fffd} utf8");
        assert_eq!(go_lossy(b"\xe2\x82A"), "\u{fffd}\u{fffd}A");
    }
}
