//! The words of every page and mail, per language: catalogues of keyed
//! texts (`signin.title: Sign in`), built in for English and German and
//! extended or replaced by the operator's files (`pages.catalogues/<lang>.yaml`).
//! A page's language is chosen from the browser's `Accept-Language` among
//! `pages.languages` (the first is the default).
//!
//! English is the reference: every other language must have each of its
//! keys, and every key a template or the code uses must be in it. Both are
//! checked when the configuration is loaded, so a customer never meets an
//! empty string or a raw key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The reference language: every key is defined in it.
pub const REFERENCE: &str = "en";

/// The built-in catalogues, by language tag.
const BUILT_IN: [(&str, &str); 2] = [
    ("en", include_str!("i18n/en.yaml")),
    ("de", include_str!("i18n/de.yaml")),
];

/// The languages that have a built-in catalogue.
pub fn built_in_languages() -> Vec<String> {
    BUILT_IN.iter().map(|(l, _)| l.to_string()).collect()
}

/// Loaded catalogues for the offered languages.
#[derive(Debug, Clone)]
pub struct Catalogues {
    /// `pages.languages`, in order; the first is the default.
    offered: Vec<String>,
    texts: HashMap<String, BTreeMap<String, String>>,
}

impl Catalogues {
    /// Loads the built-in catalogues and the operator's `dir` over them.
    /// Every problem (a file that does not parse, a language without a
    /// catalogue, a missing or unknown key) is returned, not just the first.
    pub fn load(offered: &[String], dir: Option<&Path>) -> Result<Catalogues, Vec<String>> {
        let mut errors = Vec::new();
        let mut texts: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for (lang, text) in BUILT_IN {
            match parse(text) {
                Ok(t) => {
                    texts.insert(lang.to_string(), t);
                }
                Err(e) => errors.push(format!("built-in catalogue {lang}: {e}")),
            }
        }
        if let Some(dir) = dir {
            for (lang, path) in catalogue_files(dir, &mut errors) {
                let parsed = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| parse(&t));
                match parsed {
                    Ok(t) => texts.entry(lang).or_default().extend(t),
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                }
            }
        }
        let cats = Catalogues {
            offered: offered.to_vec(),
            texts,
        };
        errors.extend(cats.completeness(dir));
        if errors.is_empty() {
            Ok(cats)
        } else {
            Err(errors)
        }
    }

    /// Every offered language has every reference key, and no key the
    /// reference lacks (a typo would otherwise never show).
    fn completeness(&self, dir: Option<&Path>) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(reference) = self.texts.get(REFERENCE) else {
            return vec!["no English catalogue".into()];
        };
        let file = |lang: &str| match dir {
            Some(d) => format!("{}", d.join(format!("{lang}.yaml")).display()),
            None => format!("{lang}.yaml"),
        };
        for lang in &self.offered {
            let Some(own) = self.texts.get(lang) else {
                errors.push(format!(
                    "pages.languages: no catalogue for `{lang}`: add {} (copy the keys of en)",
                    file(lang)
                ));
                continue;
            };
            let missing: Vec<&str> = reference
                .keys()
                .filter(|k| !own.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                errors.push(format!(
                    "{}: {} key(s) missing: {}",
                    file(lang),
                    missing.len(),
                    shortened(&missing)
                ));
            }
            let unknown: Vec<&str> = own
                .keys()
                .filter(|k| !reference.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                errors.push(format!(
                    "{}: key(s) not in the English catalogue (a typo?): {}",
                    file(lang),
                    shortened(&unknown)
                ));
            }
        }
        errors
    }

    /// Whether the reference catalogue defines `key`.
    pub fn defines(&self, key: &str) -> bool {
        self.texts
            .get(REFERENCE)
            .is_some_and(|t| t.contains_key(key))
    }

    pub fn offered(&self) -> &[String] {
        &self.offered
    }

    /// The offered language `accept` (an `Accept-Language` value) prefers.
    pub fn negotiate(&self, accept: Option<&str>) -> &str {
        let i = choose(accept, &self.offered);
        self.offered.get(i).map_or(REFERENCE, String::as_str)
    }

    /// The text of `key` in `lang` (falling back to English; `load` made
    /// sure both exist for every key the code and templates use).
    pub fn text<'a>(&'a self, lang: &str, key: &'a str) -> &'a str {
        [lang, REFERENCE]
            .iter()
            .find_map(|l| self.texts.get(*l)?.get(key))
            .map_or(key, String::as_str)
    }
}

/// At most ten of `keys`, then how many more.
fn shortened(keys: &[&str]) -> String {
    let shown = keys.iter().take(10).copied().collect::<Vec<_>>().join(", ");
    match keys.len() {
        n if n > 10 => format!("{shown} and {} more", n - 10),
        _ => shown,
    }
}

/// The `<lang>.yaml` files of an operator's folder.
fn catalogue_files(dir: &Path, errors: &mut Vec<String>) -> Vec<(String, std::path::PathBuf)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut out: Vec<(String, std::path::PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let lang = p.file_name()?.to_str()?.strip_suffix(".yaml")?.to_string();
            valid_tag(&lang).then_some((lang, p))
        })
        .collect();
    out.sort();
    out
}

/// A language tag as `pages.languages` takes it: `de`, `pt-br`.
pub fn valid_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A catalogue: nested maps of strings, flattened to dotted keys.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    value: &serde_yaml_ng::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    use serde_yaml_ng::Value as V;
    match value {
        V::Mapping(m) => {
            for (k, v) in m {
                let Some(k) = k.as_str() else {
                    return Err(format!("`{prefix}`: keys are words"));
                };
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
            Ok(())
        }
        V::String(s) => {
            out.insert(prefix.to_string(), s.clone());
            Ok(())
        }
        V::Null if prefix.is_empty() => Ok(()),
        _ => Err(format!("`{prefix}`: a text is a string (quote it)")),
    }
}

/// Fills `{name}` placeholders from `args`; unknown ones stay as written.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let close = after.find('}');
        let value = close.and_then(|end| {
            let name = &after[..end];
            args.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v, end))
        });
        match value {
            Some((v, end)) => {
                out.push_str(v);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index in `offered` of the language `accept` prefers most (its
/// highest `q`, then its order; `de-AT` matches `de`); 0 when none fits.
pub fn choose(accept: Option<&str>, offered: &[String]) -> usize {
    let mut ranges: Vec<(f32, usize, String)> = accept
        .unwrap_or("")
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut bits = part.split(';');
            let tag = bits.next()?.trim().to_ascii_lowercase();
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (!tag.is_empty() && q > 0.0 && q <= 1.0).then_some((q, i, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges
        .iter()
        .find_map(|(_, _, tag)| matching(tag, offered))
        .unwrap_or(0)
}

/// The offered language a range names: exactly, by its primary subtag, or
/// (`*`) the default.
fn matching(range: &str, offered: &[String]) -> Option<usize> {
    if range == "*" {
        return Some(0);
    }
    let primary = range.split('-').next().unwrap_or(range);
    offered
        .iter()
        .position(|o| o == range)
        .or_else(|| offered.iter().position(|o| o == primary))
        .or_else(|| {
            offered
                .iter()
                .position(|o| o.split('-').next() == Some(primary))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn langs(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_browser_preference_picks_among_the_offered_languages() {
        let offered = langs(&["en", "de"]);
        assert_eq!(choose(None, &offered), 0);
        assert_eq!(choose(Some("de-DE,de;q=0.9,en;q=0.8"), &offered), 1);
        assert_eq!(choose(Some("fr-FR, de;q=0.5, en;q=0.7"), &offered), 0);
        assert_eq!(choose(Some("fr, de;q=0.1"), &offered), 1);
        assert_eq!(choose(Some("fr"), &offered), 0);
        assert_eq!(choose(Some("en;q=0, de;q=0.2"), &offered), 1);
        assert_eq!(choose(Some("*"), &offered), 0);
        assert_eq!(choose(Some("DE"), &offered), 1);
        assert_eq!(choose(Some("pt-BR"), &langs(&["en", "pt-br"])), 1);
        assert_eq!(choose(Some("pt-PT"), &langs(&["en", "pt-br"])), 1);
        assert_eq!(choose(Some("de;q=abc, en"), &offered), 0);
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        assert_eq!(
            fill("Hello {name}, {n} left", &[("name", "Ada"), ("n", "3")]),
            "Hello Ada, 3 left"
        );
        assert_eq!(fill("a {b} {c", &[("x", "1")]), "a {b} {c");
        assert_eq!(fill("{a}{a}", &[("a", "{a}")]), "{a}{a}");
    }

    #[test]
    fn the_built_in_catalogues_are_complete() {
        let cats = Catalogues::load(&built_in_languages(), None).unwrap();
        assert_eq!(cats.text("de", "signin.title"), "Anmelden");
        assert_eq!(cats.text("fr", "signin.title"), "Sign in");
    }

    #[test]
    fn a_missing_or_unknown_key_is_an_error_naming_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fr.yaml"),
            "signin:\n  title: Se connecter\n  titel: typo\n",
        )
        .unwrap();
        let errs = Catalogues::load(&langs(&["en", "fr"]), Some(dir.path())).unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("fr.yaml: ") && all.contains("missing"),
            "{all}"
        );
        assert!(all.contains("signin.titel"), "{all}");
        let errs = Catalogues::load(&langs(&["en", "it"]), Some(dir.path())).unwrap_err();
        assert!(errs[0].contains("no catalogue for `it`"), "{errs:?}");
        std::fs::write(dir.path().join("de.yaml"), "signin: [1, 2]\n").unwrap();
        let errs = Catalogues::load(&langs(&["en"]), Some(dir.path())).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("de.yaml")), "{errs:?}");
    }

    #[test]
    fn an_operator_file_overrides_single_texts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("de.yaml"), "signin:\n  title: Einloggen\n").unwrap();
        let cats = Catalogues::load(&langs(&["de", "en"]), Some(dir.path())).unwrap();
        assert_eq!(cats.text("de", "signin.title"), "Einloggen");
        assert_eq!(cats.negotiate(None), "de");
    }

    proptest! {
        #[test]
        fn the_choice_is_always_an_offered_language(accept in "[a-zA-Z*;=.,0-9 -]{0,40}") {
            let offered = langs(&["en", "de", "pt-br"]);
            prop_assert!(choose(Some(&accept), &offered) < offered.len());
        }

        #[test]
        fn an_exact_tag_wins(i in 0usize..3, q in 1u8..10) {
            let offered = langs(&["en", "de", "pt-br"]);
            let accept = format!("fr;q=0.{q}, {}", offered[i]);
            prop_assert_eq!(choose(Some(&accept), &offered), i);
        }
    }
}
