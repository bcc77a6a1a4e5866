//! Provider quirks that break a generic OpenID Connect client, each a pure
//! check on what the provider sent: Microsoft's multi-tenant issuer, Google's
//! hosted domain, Sign in with Apple's first-time name.

use serde_json::Value;

/// The placeholder a multi-tenant issuer holds.
pub const TENANT: &str = "{tenantid}";

/// The issuer an ID token must carry: the configured one, or for a
/// multi-tenant template that template filled with the token's own `tid`
/// (a tenant id is a GUID; `allowed`, when not empty, lists the accepted
/// ones). The signature check then makes `iss` and `tid` agree.
pub fn expected_issuer(
    template: &str,
    tid: Option<&str>,
    allowed: &[String],
) -> Result<String, String> {
    if !template.contains(TENANT) {
        return Ok(template.to_string());
    }
    let tid = tid.ok_or("the ID token names no tenant (`tid`)")?;
    if !is_guid(tid) {
        return Err("the ID token's `tid` is not a tenant id".into());
    }
    if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(tid)) {
        return Err(format!("tenant {tid} is not among the accepted tenants"));
    }
    Ok(template.replace(TENANT, tid))
}

/// `8-4-4-4-12` hexadecimal digits.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a Google ID token belongs to the required Workspace domain.
pub fn hosted_domain_ok(required: Option<&str>, hd: Option<&str>) -> bool {
    match required {
        None => true,
        Some(want) => hd.is_some_and(|h| h.eq_ignore_ascii_case(want)),
    }
}

/// The name in Sign in with Apple's `user` form field (sent on the first
/// sign-in only, unsigned: used for the name, never for the identity).
pub fn apple_user_name(user: Option<&str>) -> Option<String> {
    let v: Value = serde_json::from_str(user?).ok()?;
    let part = |k: &str| {
        v.pointer(&format!("/name/{k}"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let name = [part("firstName"), part("lastName")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    (!name.is_empty() && name.len() <= 200 && !name.chars().any(char::is_control)).then_some(name)
}

/// Apple's private relay domain: real, deliverable, unique to this service.
pub fn is_private_relay(email: &str) -> bool {
    email
        .rsplit_once('@')
        .is_some_and(|(_, d)| d.eq_ignore_ascii_case("privaterelay.appleid.com"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

    #[test]
    fn a_template_takes_the_tokens_tenant() {
        assert_eq!(
            expected_issuer(T, Some(TID), &[]).unwrap(),
            format!("https://login.microsoftonline.com/{TID}/v2.0")
        );
        assert!(expected_issuer(T, None, &[]).is_err());
        assert!(expected_issuer(T, Some("evil.test/x"), &[]).is_err());
        assert!(expected_issuer(
            T,
            Some(TID),
            &["72f988bf-86f1-41af-91ab-2d7cd011db47".into()]
        )
        .is_err());
        assert!(expected_issuer(T, Some(TID), &[TID.to_uppercase()]).is_ok());
        assert_eq!(
            expected_issuer("https://idp.test", Some("x"), &[]).unwrap(),
            "https://idp.test"
        );
    }

    #[test]
    fn hosted_domain() {
        assert!(hosted_domain_ok(None, None));
        assert!(hosted_domain_ok(Some("shop.test"), Some("SHOP.test")));
        assert!(!hosted_domain_ok(Some("shop.test"), None));
        assert!(!hosted_domain_ok(Some("shop.test"), Some("evil.test")));
    }

    #[test]
    fn apple_first_time_name() {
        let u = r#"{"name":{"firstName":"Ana","lastName":"Lima"},"email":"x@privaterelay.appleid.com"}"#;
        assert_eq!(apple_user_name(Some(u)).as_deref(), Some("Ana Lima"));
        assert_eq!(
            apple_user_name(Some(r#"{"name":{"firstName":"Ana"}}"#)).as_deref(),
            Some("Ana")
        );
        assert_eq!(apple_user_name(Some("not json")), None);
        assert_eq!(apple_user_name(None), None);
        assert!(is_private_relay("abc@privaterelay.appleid.com"));
        assert!(!is_private_relay("abc@appleid.com"));
    }

    proptest! {
        #[test]
        fn a_filled_issuer_never_leaves_the_template(tid in ".{0,40}") {
            if let Ok(iss) = expected_issuer(T, Some(&tid), &[]) {
                prop_assert!(is_guid(&tid));
                prop_assert_eq!(iss, T.replace(TENANT, &tid));
            }
        }
    }
}
