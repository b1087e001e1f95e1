//! Text from logs made safe for a terminal: a log may carry escape sequences in span, thread or
//! command names that would retitle or clear the operator's terminal.

/// `s` with every control character except newline and tab replaced by `?` (ESC, BEL, CR, C1 controls,
/// DEL), so nothing read from a log can drive the terminal.
pub fn terminal(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_defused() {
        assert_eq!(super::terminal("a\u{1b}]0;pwned\u{7}b\u{9b}2J\nok\r"), "a?]0;pwned?b?2J\nok?");
    }
}
