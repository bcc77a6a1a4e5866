//! Passwords: the policy a new one must meet (pure), Argon2id hashing and
//! verification (CPU-bound: callers run them on the blocking pool), and the
//! k-anonymity range check against a breached-password service.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::model::Argon2Cost;

/// The longest password accepted (characters); longer input is refused
/// before hashing, so a megabyte "password" costs nothing.
pub const MAX_LENGTH: usize = 256;

/// Why a new password was refused. The text is shown next to the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Weak {
    #[error("Use at least {0} characters.")]
    TooShort(usize),
    #[error("Use at most {MAX_LENGTH} characters.")]
    TooLong,
    #[error("The password must not be your email address.")]
    IsEmail,
    #[error("This password is too common. Choose one that others are unlikely to use.")]
    Common,
    #[error("This password appeared in a data breach. Choose another one.")]
    Breached,
}

impl Weak {
    /// The catalogue key of the text shown next to the field, and the
    /// number it names (`pages::i18n`).
    pub fn text_key(&self) -> (&'static str, Option<usize>) {
        match self {
            Weak::TooShort(n) => ("field.password_short", Some(*n)),
            Weak::TooLong => ("field.password_long", Some(MAX_LENGTH)),
            Weak::IsEmail => ("field.password_is_email", None),
            Weak::Common => ("field.password_common", None),
            Weak::Breached => ("field.password_breached", None),
        }
    }
}

fn common() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../../data/common-passwords.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    })
}

/// Checks a new password against the policy (everything but the breach
/// service). `email` is the account's, lower-case. Pure.
pub fn check(password: &str, email: &str, min_length: usize) -> Result<(), Weak> {
    let chars = password.chars().count();
    if chars < min_length {
        return Err(Weak::TooShort(min_length));
    }
    if chars > MAX_LENGTH {
        return Err(Weak::TooLong);
    }
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if lower == email || (local.chars().count() >= 4 && lower == local) {
        return Err(Weak::IsEmail);
    }
    if common().contains(&lower) {
        return Err(Weak::Common);
    }
    Ok(())
}

/// The hasher for `cost`.
pub fn hasher(cost: &Argon2Cost) -> Result<Argon2<'static>, argon2::Error> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$m=…`) of `password` with a random salt.
pub fn hash(cost: &Argon2Cost, password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    hasher(cost)
        .map_err(|e| e.to_string())?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string (at the cost it was made with).
/// A malformed stored hash matches nothing.
pub fn verify(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Whether a stored hash was made at another cost than the configured one
/// (it is replaced at the next successful sign-in).
pub fn needs_rehash(phc: &str, cost: &Argon2Cost) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != argon2::ARGON2ID_IDENT
        || params.m_cost() != cost.memory_kib
        || params.t_cost() != cost.iterations
        || params.p_cost() != cost.parallelism
}

/// The SHA-1 of a password as the range API wants it: the first five
/// upper-case hex digits (sent) and the rest (compared locally). Pure.
pub fn range_key(password: &str) -> (String, String) {
    use sha1::Digest;
    let digest = hex::encode_upper(sha1::Sha1::digest(password.as_bytes()));
    let (prefix, suffix) = digest.split_at(5);
    (prefix.to_string(), suffix.to_string())
}

/// Whether a range response (`SUFFIX:COUNT` lines) lists `suffix` with a
/// count above zero (padding entries have count 0). Pure.
pub fn range_lists(body: &str, suffix: &str) -> bool {
    body.lines().any(|line| {
        let mut parts = line.trim().splitn(2, ':');
        let (Some(s), Some(n)) = (parts.next(), parts.next()) else {
            return false;
        };
        s.eq_ignore_ascii_case(suffix) && n.trim().parse::<u64>().is_ok_and(|n| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_refuses_short_long_email_and_common_passwords() {
        let email = "ada.lovelace@example.com";
        assert_eq!(check("short", email, 10), Err(Weak::TooShort(10)));
        assert_eq!(
            check(&"x".repeat(MAX_LENGTH + 1), email, 10),
            Err(Weak::TooLong)
        );
        assert_eq!(
            check("Ada.Lovelace@example.com", email, 10),
            Err(Weak::IsEmail)
        );
        assert_eq!(check("ADA.LOVELACE", email, 10), Err(Weak::IsEmail));
        assert_eq!(check("Password1", email, 8), Err(Weak::Common));
        assert_eq!(check("iloveyou2", email, 8), Err(Weak::Common));
        assert_eq!(check("correct horse battery", email, 10), Ok(()));
        // Length counts characters, not bytes.
        assert_eq!(check("ééééééééé", email, 10), Err(Weak::TooShort(10)));
    }

    #[test]
    fn hashes_verify_and_carry_their_cost() {
        let cost = Argon2Cost {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let h = hash(&cost, "correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(verify(&h, "correct horse battery"));
        assert!(!verify(&h, "correct horse batterY"));
        assert!(!verify("not a hash", "x"));
        assert!(!needs_rehash(&h, &cost));
        assert!(needs_rehash(&h, &Argon2Cost::default()));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash(&cost, "correct horse battery").unwrap());
    }

    #[test]
    fn the_range_check_sends_five_digits_and_matches_the_rest() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        let (prefix, suffix) = range_key("password");
        assert_eq!(prefix, "5BAA6");
        assert_eq!(suffix, "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
        let body = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n1E4C9B93F3F0682250B6CF8331B7EE68FD8:9545824\r\n";
        assert!(range_lists(body, &suffix));
        assert!(!range_lists(
            "1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\n",
            &suffix
        ));
        assert!(!range_lists("garbage", &suffix));
    }
}
