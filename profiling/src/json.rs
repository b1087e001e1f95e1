//! Hand-written JSON output for the hot path: string escaping and a `tracing` field visitor that writes
//! fields as JSON members (`"key":value,...`) without building intermediate values.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};

/// Appends `s` to `out` as a JSON string literal (with quotes). `<`, `>` and `&` are escaped too, so the
/// output can sit inside an HTML `<script>` element unchanged.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut last = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[last..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        last = i + c.len_utf8();
    }
    out.push_str(&s[last..]);
    out.push('"');
}

/// Makes serialized JSON safe to embed in an HTML `<script>` element: escapes `<`, `>`, `&` and the two
/// line separators that old JavaScript engines reject. These characters can only occur inside JSON
/// strings, where the `\uXXXX` forms mean the same thing.
pub fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Writes visited fields as comma-separated JSON members into a `String`.
///
/// Fields whose name starts with `counter.` are skipped here; [`CounterVisitor`] collects them. The field
/// `message` is kept separately (it names instant events).
pub struct FieldWriter<'a> {
    /// Output buffer; members are appended, separated by commas.
    pub out: &'a mut String,
    /// The `message` field of an event, when present.
    pub message: Option<String>,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with(crate::COUNTER_PREFIX) {
            return false;
        }
        if !self.out.is_empty() {
            self.out.push(',');
        }
        push_str(self.out, name);
        self.out.push(':');
        true
    }
}

impl Visit for FieldWriter<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            if value.is_finite() {
                let _ = write!(self.out, "{value}");
            } else {
                push_str(self.out, &value.to_string());
            }
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            self.out.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            self.out.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.out.push_str(if value { "true" } else { "false" });
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else if self.key(field) {
            push_str(self.out, value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else if self.key(field) {
            push_str(self.out, &format!("{value:?}"));
        }
    }
}

/// Collects `counter.<name> = value` fields of an event as `(name, value)`.
#[derive(Default)]
pub struct CounterVisitor {
    /// Counter samples found, name without the `counter.` prefix.
    pub samples: Vec<(&'static str, f64)>,
}

impl CounterVisitor {
    fn push(&mut self, field: &Field, v: f64) {
        if let Some(name) = field.name().strip_prefix(crate::COUNTER_PREFIX) {
            self.samples.push((name, v));
        }
    }
}

impl Visit for CounterVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value)
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value as f64)
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value as f64)
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, f64::from(u8::from(value)))
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_and_control_characters() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n</script>&\u{1}\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\n\u003c/script\u003e\u0026\u0001\u2028é""#);
        let back: String = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(back, "a\"b\\c\n</script>&\u{1}\u{2028}é");
    }

    #[test]
    fn script_safe_keeps_meaning() {
        let json = serde_json::json!({"x": "</script><img onerror=alert(1)>&"}).to_string();
        let safe = script_safe(&json);
        assert!(!safe.contains('<') && !safe.contains('>'));
        let back: serde_json::Value = serde_json::from_str(&safe).expect("valid JSON");
        assert_eq!(back["x"], "</script><img onerror=alert(1)>&");
    }
}
