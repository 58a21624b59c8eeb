//! What the audit log keeps of a request body: the JSON with every field
//! whose name suggests a secret replaced, cut to a bounded length. Bodies
//! that are not JSON are described, not kept: they could hold anything.

/// Longest summary kept, in bytes.
pub const MAX_SUMMARY_BYTES: usize = 2048;
/// What a secret field's value becomes.
pub const REDACTED: &str = "[redacted]";
/// Field names (lower case) containing any of these are redacted.
const SECRET_FIELD_PARTS: [&str; 6] = [
    "password",
    "passphrase",
    "secret",
    "token",
    "authorization",
    "private_key",
];
/// Deepest nesting walked; deeper values are dropped as a whole.
const MAX_DEPTH: usize = 32;

fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FIELD_PARTS.iter().any(|part| name.contains(part))
}

fn redact(value: &mut serde_json::Value, depth: usize) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if is_secret_field(key) {
                    *field = serde_json::Value::String(REDACTED.to_owned());
                } else if depth >= MAX_DEPTH {
                    *field = serde_json::Value::String("[too deep]".to_owned());
                } else {
                    redact(field, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                if depth >= MAX_DEPTH {
                    *item = serde_json::Value::String("[too deep]".to_owned());
                } else {
                    redact(item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// `text` cut to at most `max_bytes` on a character boundary, with a mark
/// that it was cut.
fn truncate(mut text: String, max_bytes: usize) -> String {
    const MARK: &str = "…[truncated]";
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// The summary of a request body; `None` for an empty one.
pub fn summarize(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let summary = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            redact(&mut value, 0);
            value.to_string()
        }
        Err(_) => format!("[{} bytes, not JSON]", body.len()),
    };
    Some(truncate(summary, MAX_SUMMARY_BYTES))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let cases = [
            (
                json!({"username": "alice", "password": "hunter2hunter2", "role": "office"}),
                json!({"username": "alice", "password": REDACTED, "role": "office"}),
            ),
            (
                json!({"current_password": "a", "new_password": "b"}),
                json!({"current_password": REDACTED, "new_password": REDACTED}),
            ),
            (
                json!({"hooks": [{"url": "http://x", "Secret": "s", "apiToken": "t"}]}),
                json!({"hooks": [{"url": "http://x", "Secret": REDACTED, "apiToken": REDACTED}]}),
            ),
            (
                json!({"token": {"nested": "object"}, "tokens_left": 3}),
                json!({"token": REDACTED, "tokens_left": REDACTED}),
            ),
            (json!([1, "two", null]), json!([1, "two", null])),
            (json!("just a string"), json!("just a string")),
        ];
        for (body, expected) in cases {
            let summary = summarize(body.to_string().as_bytes()).unwrap();
            let back: serde_json::Value = serde_json::from_str(&summary).unwrap();
            assert_eq!(back, expected, "{body}");
            assert!(!summary.contains("hunter2"));
        }
    }

    #[test]
    fn long_bodies_are_cut_and_others_described() {
        let long = json!({"remarks": "ä".repeat(5000), "password": "hunter2hunter2"});
        let summary = summarize(long.to_string().as_bytes()).unwrap();
        assert!(summary.len() <= MAX_SUMMARY_BYTES, "{}", summary.len());
        assert!(summary.ends_with("…[truncated]"));
        assert!(!summary.contains("hunter2"));

        assert_eq!(summarize(b""), None);
        assert_eq!(summarize(b"  \n"), None);
        assert_eq!(
            summarize(b"password=hunter2").as_deref(),
            Some("[16 bytes, not JSON]")
        );
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        // serde_json refuses this depth itself; either way nothing leaks or panics.
        assert!(summarize(deep.as_bytes()).is_some());
    }
}
