//! Escaping text for HTML and XML, for the pages and documents both
//! programs write by hand (receipts, DSFinV-K's index.xml).

/// Escapes `& < > "` so text is safe in element content and in
/// double-quoted attributes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_characters_are_escaped_once() {
        assert_eq!(
            super::escape(r#"<a href="x">&amp;</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;amp;&lt;/a&gt;"
        );
    }
}
