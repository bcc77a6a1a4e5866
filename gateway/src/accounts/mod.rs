//! Customer accounts with an email address and a password: the rules (pure),
//! the hashing, and the mail they receive. The HTTP side is
//! `portal/` (register, verify, reset, prove, account); storage is the customer directory.
//!
//! A password is an identity like a provider login: issuer
//! [`PASSWORD_ISSUER`], subject the lower-case email. So it links to and
//! unlinks from a customer id like any other way in.

pub mod hashing;
pub mod mail;
pub mod password;

/// The issuer of password identities.
pub const PASSWORD_ISSUER: &str = "password";

/// What a single-use mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Verify,
    Reset,
    /// A new email address, confirmed from the mail sent to it.
    ChangeEmail,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::ChangeEmail => "change_email",
        }
    }
}

/// The longest email address accepted (RFC 5321 path limit).
const MAX_EMAIL: usize = 254;

/// An email address as typed, checked and lower-cased, or why not (the
/// catalogue key of the text shown next to the field). Pure.
/// Deliberately loose (one `@`, a dotted domain, no spaces or controls):
/// the verification mail is the real test.
pub fn normalize_email(raw: &str) -> Result<String, &'static str> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err("field.email_empty");
    }
    if e.len() > MAX_EMAIL {
        return Err("field.email_long");
    }
    let Some((local, domain)) = e.split_once('@') else {
        return Err("field.email_invalid");
    };
    let ok = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !e.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        });
    if ok {
        Ok(e)
    } else {
        Err("field.email_invalid")
    }
}

/// A display name as typed: trimmed, at most 100 characters, no controls;
/// empty means none; an error is the key of its text. Pure.
pub fn normalize_name(raw: &str) -> Result<Option<String>, &'static str> {
    let n = raw.trim();
    if n.is_empty() {
        return Ok(None);
    }
    if n.chars().count() > 100 {
        return Err("field.name_long");
    }
    if n.chars().any(char::is_control) {
        return Err("field.name_invalid");
    }
    Ok(Some(n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM "),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@example..com",
            "ada@.example.com",
            "<ada>@example.com",
            "ada@example.com\r\nBcc: x@y.z",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn names_are_optional_and_bounded() {
        assert_eq!(normalize_name("  "), Ok(None));
        assert_eq!(normalize_name(" Ada "), Ok(Some("Ada".into())));
        assert!(normalize_name(&"x".repeat(101)).is_err());
        assert!(normalize_name("Ada\u{7}").is_err());
    }
}
