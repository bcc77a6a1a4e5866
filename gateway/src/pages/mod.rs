//! Pages and mails the gateway shows customers (sign-in, registration,
//! verification, reset, the account page, sign-out, messages; the mails of
//! `accounts::mail`), rendered from templates with autoescaping, in the
//! language the browser prefers among `pages.languages` (see [`i18n`]).
//! Never renders unescaped input.
//!
//! Operators restyle them without rebuilding: `pages.brand`, `pages.logo`
//! and `pages.primary_colour` reach every template, a file in the
//! `pages.templates` folder replaces the built-in template of the same name
//! (say, `base.html` for the frame, or `mail_verify_email.html` for a mail),
//! and a catalogue in `pages.catalogues` changes any text or adds a language.

pub mod i18n;

use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, State};
use serde::Serialize;

use crate::accounts::mail::{Kind, Outgoing};
use crate::config::model::PagesLook;
use i18n::Catalogues;

/// The built-in templates, by name.
const BUILT_IN: [(&str, &str); 43] = [
    ("base.html", include_str!("templates/base.html")),
    ("forms.html", include_str!("templates/forms.html")),
    ("chooser.html", include_str!("templates/chooser.html")),
    ("logout.html", include_str!("templates/logout.html")),
    ("message.html", include_str!("templates/message.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("welcome.html", include_str!("templates/welcome.html")),
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
    ("waiting.html", include_str!("templates/waiting.html")),
    (
        "logos/google.svg",
        include_str!("templates/logos/google.svg"),
    ),
    ("logos/meta.svg", include_str!("templates/logos/meta.svg")),
    ("logos/apple.svg", include_str!("templates/logos/apple.svg")),
    (
        "logos/microsoft.svg",
        include_str!("templates/logos/microsoft.svg"),
    ),
    (
        "logos/github.svg",
        include_str!("templates/logos/github.svg"),
    ),
    (
        "provider_button.html",
        include_str!("templates/provider_button.html"),
    ),
    ("mail_base.txt", include_str!("templates/mail_base.txt")),
    ("mail_base.html", include_str!("templates/mail_base.html")),
    (
        "mail_verify_email.txt",
        include_str!("templates/mail_verify_email.txt"),
    ),
    (
        "mail_verify_email.html",
        include_str!("templates/mail_verify_email.html"),
    ),
    (
        "mail_reset_password.txt",
        include_str!("templates/mail_reset_password.txt"),
    ),
    (
        "mail_reset_password.html",
        include_str!("templates/mail_reset_password.html"),
    ),
    (
        "mail_reset_unknown_account.txt",
        include_str!("templates/mail_reset_unknown_account.txt"),
    ),
    (
        "mail_reset_unknown_account.html",
        include_str!("templates/mail_reset_unknown_account.html"),
    ),
    (
        "mail_lockout.txt",
        include_str!("templates/mail_lockout.txt"),
    ),
    (
        "mail_lockout.html",
        include_str!("templates/mail_lockout.html"),
    ),
    (
        "mail_password_changed.txt",
        include_str!("templates/mail_password_changed.txt"),
    ),
    (
        "mail_password_changed.html",
        include_str!("templates/mail_password_changed.html"),
    ),
    ("mail_link.html", include_str!("templates/mail_link.html")),
    (
        "mail_change_email.txt",
        include_str!("templates/mail_change_email.txt"),
    ),
    (
        "mail_change_email.html",
        include_str!("templates/mail_change_email.html"),
    ),
    (
        "mail_email_changed.txt",
        include_str!("templates/mail_email_changed.txt"),
    ),
    (
        "mail_email_changed.html",
        include_str!("templates/mail_email_changed.html"),
    ),
    ("privacy.html", include_str!("templates/privacy.html")),
    (
        "privacy_status.html",
        include_str!("templates/privacy_status.html"),
    ),
    ("export.html", include_str!("templates/export.html")),
    (
        "mail_erasure_receipt.txt",
        include_str!("templates/mail_erasure_receipt.txt"),
    ),
    (
        "mail_erasure_receipt.html",
        include_str!("templates/mail_erasure_receipt.html"),
    ),
];

/// The compiled page templates and their catalogues.
pub struct Pages {
    env: Environment<'static>,
    look: PagesLook,
    texts: Arc<Catalogues>,
}

impl Pages {
    pub fn new(look: &PagesLook) -> Result<Pages, String> {
        let texts = Arc::new(
            Catalogues::load(&look.languages, look.catalogues.as_deref())
                .map_err(|e| e.join("; "))?,
        );
        let mut env = Environment::new();
        // `errors.email` is empty, not an error, when a form has no errors.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        add_text_functions(&mut env, &texts);
        let mut sources: Vec<(String, String)> = BUILT_IN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        if let Some(dir) = &look.templates {
            for (name, text) in overrides(dir)? {
                sources.retain(|(n, _)| *n != name);
                sources.push((name, text));
            }
        }
        for (name, text) in &sources {
            if let Some(key) = undefined_keys(text).find(|k| !texts.defines(k)) {
                return Err(format!(
                    "template {name}: the text `{key}` is in no catalogue (add it to en.yaml in pages.catalogues)"
                ));
            }
            env.add_template_owned(name.clone(), text.clone())
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        let pages = Pages {
            env,
            look: look.clone(),
            texts,
        };
        // Every template must render with an empty context in every
        // language: a broken override is refused at start, not shown to a customer.
        for lang in pages.texts.offered() {
            for (name, _) in &sources {
                pages
                    .try_render(lang, name, minijinja::context! {})
                    .map_err(|e| format!("template {name}: {e}"))?;
            }
        }
        Ok(pages)
    }

    fn try_render<S: Serialize>(
        &self,
        lang: &str,
        name: &str,
        ctx: S,
    ) -> Result<String, minijinja::Error> {
        self.env.get_template(name).and_then(|t| {
            t.render(minijinja::context! {
                brand => self.look.brand,
                logo => self.look.logo,
                primary => self.look.primary_colour,
                lang,
                ..Value::from_serialize(&ctx)
            })
        })
    }

    /// Renders `name` in `lang` with `ctx` (plus `brand`, `logo`, `primary`, `lang`).
    pub fn render<S: Serialize>(&self, lang: &str, name: &str, ctx: S) -> String {
        let result = self.try_render(lang, name, ctx);
        match result {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template = name, error = %e, "page template failed");
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
            }
        }
    }

    /// The offered language an `Accept-Language` value prefers.
    pub fn language(&self, accept: Option<&str>) -> String {
        self.texts.negotiate(accept).to_string()
    }

    /// The text `key` in `lang`, with `{name}` placeholders filled from `args`.
    pub fn text(&self, lang: &str, key: &str, args: &[(&str, &str)]) -> String {
        i18n::fill(self.texts.text(lang, key), args)
    }

    /// `1 second`, `5 seconds` (`unit`: `seconds`, `minutes` or `hours`).
    pub fn count(&self, lang: &str, unit: &str, n: u64) -> String {
        let form = if n == 1 { "one" } else { "other" };
        let key = format!("common.{unit}.{form}");
        self.text(lang, &key, &[("n", &n.to_string())])
    }

    /// `1 hour`, `2 hours 30 minutes`, `15 minutes`, `10 seconds`.
    pub fn duration(&self, lang: &str, d: std::time::Duration) -> String {
        if d.as_secs() < 60 {
            return self.count(lang, "seconds", d.as_secs());
        }
        let mins = d.as_secs() / 60;
        match (mins / 60, mins % 60) {
            (h, 0) => self.count(lang, "hours", h),
            (0, m) => self.count(lang, "minutes", m),
            (h, m) => format!(
                "{} {}",
                self.count(lang, "hours", h),
                self.count(lang, "minutes", m)
            ),
        }
    }

    /// The page of a problem the gateway answers itself (`crate::problem`):
    /// what happened, what to do (`retry`: the URL to try again), a reference.
    pub fn problem(
        &self,
        lang: &str,
        p: &crate::problem::Problem,
        request_id: &str,
        retry: Option<&str>,
    ) -> String {
        let code = p.code();
        let args = p.text_args();
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let title = self.text(lang, &format!("problem.{code}.title"), &[]);
        let detail = self.text(lang, &format!("problem.{code}.detail"), &args);
        let action = p.action();
        let action_text = action.map(|_| self.text(lang, &format!("problem.{code}.action"), &[]));
        self.render(
            lang,
            "problem.html",
            minijinja::context! {
                title, detail, status => p.status(),
                action => action.map(|a| a.0), action_text,
                retry => retry.filter(|_| p.retryable()),
                request_id,
            },
        )
    }

    /// A simple message page (`title` and `message` already in `lang`).
    pub fn message(
        &self,
        lang: &str,
        title: &str,
        message: &str,
        link: Option<(&str, &str)>,
    ) -> String {
        self.render(
            lang,
            "message.html",
            minijinja::context! {
                title, message,
                link => link.map(|l| l.0), link_text => link.map(|l| l.1),
            },
        )
    }

    /// The message page `{key}.title` / `{key}.body` in `lang`, with a
    /// link (`href`, the key of its text).
    pub fn keyed_message(&self, lang: &str, key: &str, link: Option<(&str, &str)>) -> String {
        let title = self.text(lang, &format!("{key}.title"), &[]);
        let body = self.text(lang, &format!("{key}.body"), &[]);
        let link = link.map(|(href, k)| (href, self.text(lang, k, &[])));
        self.message(
            lang,
            &title,
            &body,
            link.as_ref().map(|(h, t)| (*h, t.as_str())),
        )
    }

    /// A mail in `lang`: its subject from the catalogue, its text and HTML
    /// bodies from the templates `mail_<kind>.txt` and `.html`, greeting
    /// `name` when known.
    pub fn mail(&self, lang: &str, kind: Kind, to: &str, content: MailContent<'_>) -> Outgoing {
        let brand = self.look.brand.as_str();
        let subject = self.text(
            lang,
            &format!("mail.{}.subject", kind.as_str()),
            &[("brand", brand)],
        );
        let ctx = minijinja::context! {
            name => content.name, link => content.link, ttl => content.ttl,
            address => content.address, reference => content.reference, subject,
        };
        let text = self.render(lang, &format!("mail_{}.txt", kind.as_str()), &ctx);
        let html = self.render(lang, &format!("mail_{}.html", kind.as_str()), &ctx);
        Outgoing {
            kind,
            to: to.to_string(),
            subject,
            text,
            html,
            link: content.link.map(str::to_string),
        }
    }
}

/// A unix time as pages show it: `2026-12-01 20:04 UTC`. Pure.
pub fn when(t: i64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(st).to_string();
    format!("{} UTC", s.get(..16).unwrap_or(&s).replacen('T', " ", 1))
}

/// What a mail says beyond its kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailContent<'a> {
    /// The customer's name, when known (greets them by it).
    pub name: Option<&'a str>,
    /// The link of the mail (verification, reset).
    pub link: Option<&'a str>,
    /// How long the link works, in words.
    pub ttl: &'a str,
    /// An address the mail names (the new one, when the address changed).
    pub address: Option<&'a str>,
    /// A reference the customer can quote (the erasure request's id).
    pub reference: Option<&'a str>,
}

/// `t("key", name=value)`: the text in the page's language, placeholders
/// filled (escaped when printed); `tb(...)`: the same with the filled values
/// in bold, for sentences that name an address or a title.
fn add_text_functions(env: &mut Environment<'static>, texts: &Arc<Catalogues>) {
    let plain = texts.clone();
    env.add_function(
        "t",
        move |state: &State, key: &str, args: Kwargs| -> Result<String, minijinja::Error> {
            let values = kwargs_text(&args)?;
            let refs: Vec<(&str, &str)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Ok(i18n::fill(plain.text(&lang_of(state), key), &refs))
        },
    );
    let bold = texts.clone();
    env.add_function(
        "tb",
        move |state: &State, key: &str, args: Kwargs| -> Result<Value, minijinja::Error> {
            let values: Vec<(String, String)> = kwargs_text(&args)?
                .into_iter()
                .map(|(k, v)| (k, format!("<strong>{}</strong>", escape(&v))))
                .collect();
            let refs: Vec<(&str, &str)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let text = escape(bold.text(&lang_of(state), key));
            Ok(Value::from_safe_string(i18n::fill(&text, &refs)))
        },
    );
}

fn lang_of(state: &State) -> String {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| i18n::REFERENCE.to_string())
}

/// The keyword arguments of `t`/`tb` as text (an undefined value: empty).
fn kwargs_text(args: &Kwargs) -> Result<Vec<(String, String)>, minijinja::Error> {
    let names: Vec<String> = args.args().map(str::to_string).collect();
    names
        .into_iter()
        .map(|k| {
            let v: Value = args.get(&k)?;
            let text = if v.is_undefined() || v.is_none() {
                String::new()
            } else {
                v.to_string()
            };
            Ok((k, text))
        })
        .collect()
}

/// HTML-escapes `s` (as minijinja's autoescape does).
fn escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

/// The literal keys a template passes to `t(...)` or `tb(...)`.
fn undefined_keys(template: &str) -> impl Iterator<Item = &str> {
    ["t(\"", "tb(\""].into_iter().flat_map(move |open| {
        template.match_indices(open).filter_map(move |(i, _)| {
            let before = template[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                return None;
            }
            let rest = &template[i + open.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
    })
}

/// The `*.html` and `*.txt` files of an override folder, by file name.
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
        if !(name.ends_with(".html") || name.ends_with(".txt")) {
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
            languages: i18n::built_in_languages(),
            catalogues: None,
        }
    }

    #[test]
    fn waits_and_durations_read_in_words_in_each_language() {
        let p = Pages::new(&look("Shop")).unwrap();
        assert_eq!(p.count("en", "seconds", 1), "1 second");
        assert_eq!(p.count("en", "seconds", 5), "5 seconds");
        assert_eq!(p.count("de", "seconds", 5), "5 Sekunden");
        let d = std::time::Duration::from_secs;
        assert_eq!(p.duration("en", d(86_400)), "24 hours");
        assert_eq!(p.duration("en", d(3600)), "1 hour");
        assert_eq!(p.duration("en", d(1800)), "30 minutes");
        assert_eq!(p.duration("de", d(5400)), "1 Stunde 30 Minuten");
    }

    #[test]
    fn pages_speak_the_chosen_language() {
        let p = Pages::new(&look("Shop")).unwrap();
        assert_eq!(p.language(Some("de-CH, en;q=0.5")), "de");
        assert_eq!(p.language(Some("fr")), "en");
        let de = p.keyed_message("de", "message.not_found", Some(("/", "common.home")));
        assert!(de.contains("<html lang=\"de\">"), "{de}");
        assert!(
            de.contains("Seite nicht gefunden") && de.contains("Startseite"),
            "{de}"
        );
        let problem = crate::problem::Problem::ConsentRequired(vec!["<News>".into()]);
        let html = p.problem("de", &problem, "r1", None);
        assert!(html.contains("Einwilligung in: &lt;News&gt;"), "{html}");
    }

    #[test]
    fn mails_greet_by_name_and_carry_the_link_in_text_and_html() {
        let p = Pages::new(&look("Shop & Co")).unwrap();
        let link = "https://shop.example/_auth/verify?token=abc&return_to=%2Fa";
        let content = MailContent {
            name: Some("Ada <3"),
            link: Some(link),
            ttl: "24 hours",
            address: None,
            reference: None,
        };
        let m = p.mail("en", Kind::Verify, "a@example.com", content);
        assert_eq!(m.subject, "Confirm your email address for Shop & Co");
        assert!(m.text.starts_with("Hello Ada <3,\n\n"), "{}", m.text);
        assert!(m.text.contains(&format!("\n\n{link}\n\n")), "{}", m.text);
        assert!(
            m.text.contains("24 hours") && m.text.contains("Shop & Co"),
            "{}",
            m.text
        );
        assert!(m.html.contains("Hello Ada &lt;3,"), "{}", m.html);
        assert!(m.html.contains("href=\"https:&#x2f;&#x2f;shop.example&#x2f;_auth&#x2f;verify?token=abc&amp;return_to=%2Fa\""), "{}", m.html);
        let de = p.mail(
            "de",
            Kind::ResetUnknown,
            "b@example.com",
            MailContent::default(),
        );
        assert!(de.text.starts_with("Guten Tag,\n\n"), "{}", de.text);
        assert!(de.subject.contains("Passwort"), "{}", de.subject);
        assert!(de.link.is_none());
    }

    #[test]
    fn an_override_may_replace_a_mail_and_must_use_known_texts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mail_lockout.txt"),
            "{{ t(\"mail.hello\") }} custom {{ link }}",
        )
        .unwrap();
        let mut l = look("Shop");
        l.templates = Some(dir.path().to_path_buf());
        let p = Pages::new(&l).unwrap();
        let m = p.mail(
            "en",
            Kind::Lockout,
            "a@x.example",
            MailContent {
                link: Some("L"),
                ..Default::default()
            },
        );
        assert_eq!(m.text, "Hello, custom L");
        std::fs::write(
            dir.path().join("mail_lockout.txt"),
            "{{ t(\"mail.nope\") }}",
        )
        .unwrap();
        let err = Pages::new(&l).err().unwrap();
        assert!(
            err.contains("mail_lockout.txt") && err.contains("mail.nope"),
            "{err}"
        );
    }

    /// Every catalogue key the code names (a string literal such as
    /// `"message.not_found"`) is in the English catalogue, so no page
    /// shows a raw key.
    #[test]
    fn every_key_the_code_uses_is_in_the_catalogue() {
        let p = Pages::new(&look("Shop")).unwrap();
        let groups = [
            "common", "signin", "login", "register", "welcome", "field", "reset", "account",
            "consent", "receipt", "logout", "prove", "problem", "message", "mail",
        ];
        // Where texts are named (event kinds such as `consent.granted` elsewhere are not texts).
        let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        let mut files: Vec<std::path::PathBuf> =
            ["portal", "pages", "accounts", "login", "problem.rs", "edge"]
                .iter()
                .map(|d| src.join(d))
                .collect();
        let mut checked = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for literal in code.split('"').skip(1).step_by(2) {
                let Some((group, rest)) = literal.split_once('.') else {
                    continue;
                };
                let keyish = !rest.is_empty()
                    && rest.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
                    });
                let file =
                    [".html", ".txt", ".yaml"].iter().any(|x| rest.ends_with(x)) || rest == "html";
                if !groups.contains(&group) || !keyish || rest.ends_with('.') || file {
                    continue;
                }
                // `format!("{key}.title")` and the like are built, not named.
                if ["title", "body"].contains(&rest) {
                    continue;
                }
                // A message page names its group (`{group}.title` is a text).
                let known =
                    p.texts.defines(literal) || p.texts.defines(&format!("{literal}.title"));
                assert!(known, "{}: `{literal}` is in no catalogue", path.display());
                checked += 1;
            }
        }
        assert!(
            checked > 80,
            "only {checked} keys found: the scan is broken"
        );
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
        let html = p.message("en", "T", "hello", None);
        assert!(html.contains("<p class=custom>hello</p>"), "{html}");
        std::fs::write(dir.path().join("signin.html"), "{% block %}").unwrap();
        let err = Pages::new(&l).err().unwrap();
        assert!(err.contains("signin.html"), "{err}");
    }

    #[test]
    fn pages_escape_their_input() {
        let p = Pages::new(&look("Shop")).unwrap();
        let html = p.message("en", "<b>t</b>", "a & <script>", Some(("/x?a=1&b=2", "Go")));
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
