//! The customer an OAuth 2.0 provider's profile API describes, read with the
//! provider's mapping (which field is the id, the email, the name, and what
//! makes the email verified). Pure: the JSON in, the identity out.

use serde_json::Value;

/// Where the profile fields are (dotted paths into the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileMap {
    pub id: String,
    pub email: String,
    /// Tried in order; the first non-empty one is the name.
    pub name: Vec<String>,
    pub email_verified: Verification,
}

impl Default for ProfileMap {
    fn default() -> Self {
        ProfileMap {
            id: "id".into(),
            email: "email".into(),
            name: vec!["name".into()],
            email_verified: Verification::Never,
        }
    }
}

/// How the gateway decides that the profile's email is the customer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The provider only ever returns confirmed addresses (configured so).
    Always,
    /// Never counts as verified (the default: unknown means unverified).
    Never,
    /// A boolean field of the answer says it.
    Field(String),
}

/// An identity read from a profile API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The value at a dotted path (`data.user.id`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |cur, key| cur.as_object()?.get(key))
}

/// A string, or a number written as one (GitHub's ids are integers).
fn text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control)).then_some(s)
}

/// `true`, or the string `"true"` some providers send.
fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str() == Some("true")
}

/// Reads the identity; an answer without a usable id is refused.
pub fn read(answer: &Value, map: &ProfileMap) -> Result<Found, String> {
    let subject = at(answer, &map.id)
        .and_then(text)
        .ok_or_else(|| format!("the profile has no usable `{}`", map.id))?;
    let email = at(answer, &map.email)
        .and_then(text)
        .filter(|e| e.contains('@'));
    let name = map.name.iter().find_map(|f| at(answer, f).and_then(text));
    let email_verified = email.is_some()
        && match &map.email_verified {
            Verification::Always => true,
            Verification::Never => false,
            Verification::Field(f) => at(answer, f).is_some_and(truthy),
        };
    Ok(Found {
        subject,
        email,
        email_verified,
        name,
    })
}

/// The primary address of a GitHub-style address list
/// (`[{email, primary, verified}]`) and whether it is verified.
pub fn primary_email(list: &Value) -> Option<(String, bool)> {
    let primary = list
        .as_array()?
        .iter()
        .find(|e| e.get("primary").is_some_and(truthy))?;
    let email = primary.get("email").and_then(text)?;
    let verified = primary.get("verified").is_some_and(truthy);
    email.contains('@').then_some((email, verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn meta_answer_email_unverified_by_default() {
        let a = json!({"id": "10228", "name": "Ana Lima", "email": "ana@example.test"});
        let f = read(&a, &ProfileMap::default()).unwrap();
        assert_eq!(f.subject, "10228");
        assert_eq!(f.email.as_deref(), Some("ana@example.test"));
        assert!(!f.email_verified);
        let trusting = ProfileMap {
            email_verified: Verification::Always,
            ..ProfileMap::default()
        };
        assert!(read(&a, &trusting).unwrap().email_verified);
    }

    #[test]
    fn github_ids_are_numbers_and_the_name_falls_back_to_the_login() {
        let map = ProfileMap {
            name: vec!["name".into(), "login".into()],
            ..ProfileMap::default()
        };
        let a = json!({"id": 583231, "login": "octo", "name": null, "email": null});
        let f = read(&a, &map).unwrap();
        assert_eq!(f.subject, "583231");
        assert_eq!(f.name.as_deref(), Some("octo"));
        assert_eq!(f.email, None);
    }

    #[test]
    fn nested_fields_and_verified_flags() {
        let map = ProfileMap {
            id: "data.uid".into(),
            email: "data.mail".into(),
            name: vec!["data.display".into()],
            email_verified: Verification::Field("data.mail_ok".into()),
        };
        let a =
            json!({"data": {"uid": "u1", "mail": "a@b.test", "display": "A", "mail_ok": "true"}});
        assert!(read(&a, &map).unwrap().email_verified);
        let b = json!({"data": {"uid": "u1", "mail": "a@b.test", "mail_ok": false}});
        assert!(!read(&b, &map).unwrap().email_verified);
    }

    #[test]
    fn no_usable_id_is_refused() {
        let map = ProfileMap::default();
        for a in [
            json!({}),
            json!({"id": ""}),
            json!({"id": 1.5}),
            json!({"id": {"x": 1}}),
            json!([1]),
        ] {
            assert!(read(&a, &map).is_err(), "{a}");
        }
    }

    #[test]
    fn the_primary_address_decides() {
        let l = json!([
            {"email": "old@x.test", "primary": false, "verified": true},
            {"email": "new@x.test", "primary": true, "verified": false},
        ]);
        assert_eq!(primary_email(&l), Some(("new@x.test".into(), false)));
        assert_eq!(primary_email(&json!([])), None);
        assert_eq!(primary_email(&json!({"email": "a@b"})), None);
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("(id|email|name|login|verified|x)", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_answer_reads_or_is_refused_without_panicking(a in any_json()) {
            let map = ProfileMap { email_verified: Verification::Field("verified".into()), ..ProfileMap::default() };
            if let Ok(f) = read(&a, &map) {
                prop_assert!(!f.subject.is_empty());
                prop_assert!(!f.subject.chars().any(char::is_control));
                // Verified only ever with an address to verify.
                prop_assert!(!f.email_verified || f.email.is_some());
            }
            let _ = primary_email(&a);
        }
    }
}
