//! Prometheus text exposition (format 0.0.4) for `/metrics`, written by
//! hand: a handful of gauges and counters do not need a metrics registry.

/// Content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds one exposition document.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A counter (only ever grows; `_total` by convention).
    pub fn counter(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, "counter").sample(name, &[], value)
    }

    /// A gauge (goes up and down).
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, help, "gauge").sample(name, &[], value)
    }

    /// Starts a family whose samples carry labels; add them with [`Exposition::sample`].
    pub fn family(&mut self, name: &str, help: &str, kind: &str) -> &mut Self {
        self.text
            .push_str(&format!("# HELP {name} {}", help.replace('\n', " ")));
        self.text.push('\n');
        self.text.push_str(&format!("# TYPE {name} {kind}"));
        self.text.push('\n');
        self
    }

    /// A whole family with one label: `samples` are (label value, value).
    pub fn by_label<'a>(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> &mut Self {
        self.family(name, help, kind);
        for (value_of_label, value) in samples {
            self.sample(name, &[(label, value_of_label)], value);
        }
        self
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            self.text.push_str(&format!("{{{}}}", inner.join(",")));
        }
        self.text.push_str(&format!(" {value}"));
        self.text.push('\n');
        self
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let text = Exposition::new()
            .counter("valeo_things_total", "Things seen.", 3.0)
            .family(
                "valeo_dead_letters_total",
                "Dead letters by reason.",
                "counter",
            )
            .sample("valeo_dead_letters_total", &[("reason", "bad\"sig")], 2.0)
            .finish();
        assert_eq!(
            text,
            "# HELP valeo_things_total Things seen.\n# TYPE valeo_things_total counter\nvaleo_things_total 3\n\
             # HELP valeo_dead_letters_total Dead letters by reason.\n# TYPE valeo_dead_letters_total counter\n\
             valeo_dead_letters_total{reason=\"bad\\\"sig\"} 2\n"
        );
    }
}
