//! Pages the gateway shows customers (sign-in, registration, verification,
//! reset, the account page, sign-out, messages), rendered from templates
//! with autoescaping. Never renders unescaped input.
//!
//! Operators restyle them without rebuilding: `pages.brand`, `pages.logo`
//! and `pages.primary_colour` reach every template, and a file in the
//! `pages.templates` folder replaces the built-in template of the same name
//! (say, `base.html` for the frame, or `signin.html` for its texts).

use std::path::Path;

use minijinja::Environment;
use serde::Serialize;

use crate::config::model::PagesLook;

/// The built-in templates, by name.
const BUILT_IN: [(&str, &str); 13] = [
    ("base.html", include_str!("templates/base.html")),
    ("forms.html", include_str!("templates/forms.html")),
    ("chooser.html", include_str!("templates/chooser.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("message.html", include_str!("templates/message.html")),
    ("signin.html", include_str!("templates/signin.html")),
    (
        "reset_request.html",
        include_str!("templates/reset_request.html"),
    ),
    ("reset.html", include_str!("templates/reset.html")),
    ("account.html", include_str!("templates/account.html")),
    ("prove.html", include_str!("templates/prove.html")),
    ("consent.html", include_str!("templates/consent.html")),
    ("receipt.html", include_str!("templates/receipt.html")),
    ("problem.html", include_str!("templates/problem.html")),
];

/// The compiled page templates.
pub struct Pages {
    env: Environment<'static>,
    look: PagesLook,
}

impl Pages {
    pub fn new(look: &PagesLook) -> Result<Pages, String> {
        let mut env = Environment::new();
        // `errors.email` is empty, not an error, when a form has no errors.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, text) in BUILT_IN {
            env.add_template(name, text)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        if let Some(dir) = &look.templates {
            for (name, text) in overrides(dir)? {
                env.add_template_owned(name.clone(), text)
                    .map_err(|e| format!("pages.templates: {}: {e}", dir.join(&name).display()))?;
            }
        }
        let pages = Pages {
            env,
            look: look.clone(),
        };
        // Every template must render with an empty context: a broken
        // override is refused at start, not shown to a customer.
        for (name, _) in BUILT_IN {
            pages
                .try_render(name, minijinja::context! {})
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(pages)
    }

    fn try_render<S: Serialize>(&self, name: &str, ctx: S) -> Result<String, minijinja::Error> {
        self.env.get_template(name).and_then(|t| {
            t.render(minijinja::context! {
                brand => self.look.brand,
                logo => self.look.logo,
                primary => self.look.primary_colour,
                ..minijinja::Value::from_serialize(&ctx)
            })
        })
    }

    /// Renders `name` with `ctx` (plus `brand`, `logo`, `primary`).
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> String {
        let result = self.try_render(name, ctx);
        match result {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
            }
        }
    }

    /// The page of a problem the gateway answers itself (`crate::problem`):
    /// what happened, what to do (`retry`: the URL to try again), a reference.
    pub fn problem(
        &self,
        p: &crate::problem::Problem,
        request_id: &str,
        retry: Option<&str>,
    ) -> String {
        let action = p.action();
        self.render(
            "problem.html",
            minijinja::context! {
                title => p.title(), detail => p.detail(), status => p.status(),
                action => action.map(|a| a.0), action_text => action.map(|a| a.1),
                retry => retry.filter(|_| p.retryable()),
                request_id,
            },
        )
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

/// The `*.html` files of an override folder, by file name.
fn overrides(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("pages.templates: {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("pages.templates: {}: {e}", dir.display()))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".html") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("pages.templates: {}: {e}", path.display()))?;
        out.push((name.to_string(), text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(brand: &str) -> PagesLook {
        PagesLook {
            brand: brand.into(),
            logo: None,
            primary_colour: "#1d4ed8".into(),
            templates: None,
        }
    }

    #[test]
    fn an_override_folder_replaces_templates_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("message.html"),
            "{% extends \"base.html\" %}{% block content %}<p class=custom>{{ message }}</p>{% endblock %}",
        )
        .unwrap();
        let mut l = look("Shop");
        l.templates = Some(dir.path().to_path_buf());
        let p = Pages::new(&l).unwrap();
        let html = p.message("T", "hello", None);
        assert!(html.contains("<p class=custom>hello</p>"), "{html}");
        std::fs::write(dir.path().join("signin.html"), "{% block %}").unwrap();
        let err = Pages::new(&l).err().unwrap();
        assert!(err.contains("signin.html"), "{err}");
    }

    #[test]
    fn pages_escape_their_input() {
        let p = Pages::new(&look("Shop")).unwrap();
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
