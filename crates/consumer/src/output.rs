//! How the command-line tools (`redrive`, `audit`) print their reports: text for people, JSON
//! for scripts.

use clap::ValueEnum;

/// The report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Text,
    /// One JSON document.
    Json,
}

/// At most `max` characters of `text` (a line prefix in a sample), control characters shown
/// as spaces, with `…` when cut.
pub(crate) fn prefix(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_cut_on_characters_and_marked() {
        assert_eq!(prefix("héllo", 10), "héllo");
        assert_eq!(prefix("héllo", 2), "hé…");
        assert_eq!(prefix("a\nb", 5), "a b");
    }
}
