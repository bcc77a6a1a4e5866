//! Pages the gateway shows customers (sign-in chooser, sign-out, messages),
//! rendered from templates with autoescaping. Never renders unescaped input.

use minijinja::Environment;
use serde::Serialize;

/// The compiled page templates.
pub struct Pages {
    env: Environment<'static>,
    brand: String,
}

impl Pages {
    pub fn new(brand: &str) -> Result<Pages, String> {
        let mut env = Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("chooser.html", include_str!("templates/chooser.html")),
            ("logout.html", include_str!("templates/logout.html")),
            ("message.html", include_str!("templates/message.html")),
        ] {
            env.add_template(name, text)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Pages {
            env,
            brand: brand.to_string(),
        })
    }

    /// Renders `name` with `ctx` (plus `brand`).
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> String {
        let result = self
            .env
            .get_template(name)
            .and_then(|t| t.render(minijinja::context! { brand => self.brand, ..minijinja::Value::from_serialize(&ctx) }));
        match result {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
            }
        }
    }

    /// A simple message page.
    pub fn message(&self, title: &str, message: &str, link: Option<(&str, &str)>) -> String {
        self.render(
            "message.html",
            minijinja::context! {
                title, message,
                link => link.map(|l| l.0), link_text => link.map(|l| l.1),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_their_input() {
        let p = Pages::new("Shop").unwrap();
        let html = p.message("<b>t</b>", "a & <script>", Some(("/x?a=1&b=2", "Go")));
        // minijinja also escapes `/` (as &#x2f;).
        assert!(
            html.contains("<h1>&lt;b&gt;t&lt;&#x2f;b&gt;</h1>"),
            "{html}"
        );
        assert!(html.contains("<p>a &amp; &lt;script&gt;</p>"), "{html}");
        assert!(
            html.contains("<title>&lt;b&gt;t&lt;&#x2f;b&gt; · Shop</title>"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }
}
