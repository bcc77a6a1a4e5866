//! What an operator gets by writing `preset: meta | google | apple |
//! microsoft | github`: the provider's endpoints, scopes, profile mapping
//! and quirks, each of which the configuration may override. Pure data.

use super::client::TokenAuth;
use super::profile::{ProfileMap, Verification};

/// Whether the provider issues ID tokens or only access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OpenID Connect: the identity is the verified ID token.
    #[default]
    Oidc,
    /// OAuth 2.0 only: the identity is read from a profile API.
    OAuth2(ProfileMap),
}

/// A provider's defaults.
#[derive(Debug, Clone)]
pub struct Preset {
    /// Its name, also the name of its shipped logo.
    pub name: &'static str,
    pub protocol: Protocol,
    pub issuer: &'static str,
    pub discovery_url: Option<&'static str>,
    pub display_name: &'static str,
    pub scopes: &'static [&'static str],
    pub authorization_endpoint: Option<&'static str>,
    pub token_endpoint: Option<&'static str>,
    pub userinfo_endpoint: Option<&'static str>,
    pub emails_endpoint: Option<&'static str>,
    pub pkce: bool,
    pub token_auth: Option<TokenAuth>,
    pub form_post: bool,
    pub appsecret_proof: bool,
}

/// The names `preset:` accepts.
pub const NAMES: [&str; 5] = ["meta", "google", "apple", "microsoft", "github"];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Preset> {
    let key = NAMES.iter().copied().find(|n| *n == name)?;
    let base = Preset {
        name: key,
        protocol: Protocol::Oidc,
        issuer: "",
        discovery_url: None,
        display_name: "",
        scopes: &["openid", "email", "profile"],
        authorization_endpoint: None,
        token_endpoint: None,
        userinfo_endpoint: None,
        emails_endpoint: None,
        pkce: true,
        token_auth: None,
        form_post: false,
        appsecret_proof: false,
    };
    let p = match key {
        "google" => Preset {
            issuer: "https://accounts.google.com",
            display_name: "Google",
            ..base
        },
        // The `common` endpoint serves every tenant; its issuer is a template
        // each ID token fills with its own `tid`.
        "microsoft" => Preset {
            issuer: "https://login.microsoftonline.com/{tenantid}/v2.0",
            discovery_url: Some(
                "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
            ),
            display_name: "Microsoft",
            ..base
        },
        // Apple posts the answer (`form_post`, required with the name and
        // email scopes), documents no PKCE, takes its made secret in the form.
        "apple" => Preset {
            issuer: "https://appleid.apple.com",
            display_name: "Apple",
            scopes: &["openid", "name", "email"],
            pkce: false,
            token_auth: Some(TokenAuth::Post),
            form_post: true,
            ..base
        },
        "meta" => Preset {
            protocol: Protocol::OAuth2(ProfileMap {
                id: "id".into(),
                email: "email".into(),
                name: vec!["name".into()],
                // Meta does not say whether the address was confirmed.
                email_verified: Verification::Never,
            }),
            issuer: "https://www.facebook.com",
            display_name: "Facebook",
            scopes: &["email", "public_profile"],
            authorization_endpoint: Some(meta_endpoints().0),
            token_endpoint: Some(meta_endpoints().1),
            userinfo_endpoint: Some(meta_endpoints().2),
            token_auth: Some(TokenAuth::Post),
            appsecret_proof: true,
            ..base
        },
        "github" => Preset {
            protocol: Protocol::OAuth2(ProfileMap {
                id: "id".into(),
                email: "email".into(),
                name: vec!["name".into(), "login".into()],
                email_verified: Verification::Never,
            }),
            issuer: "https://github.com",
            display_name: "GitHub",
            scopes: &["read:user", "user:email"],
            authorization_endpoint: Some("https://github.com/login/oauth/authorize"),
            token_endpoint: Some("https://github.com/login/oauth/access_token"),
            userinfo_endpoint: Some("https://api.github.com/user"),
            emails_endpoint: Some("https://api.github.com/user/emails"),
            token_auth: Some(TokenAuth::Post),
            ..base
        },
        _ => return None,
    };
    Some(p)
}

/// Meta's dialog, token and profile endpoints, all of one pinned Graph API
/// version (override the endpoints to move to another).
fn meta_endpoints() -> (&'static str, &'static str, &'static str) {
    (
        "https://www.facebook.com/v23.0/dialog/oauth",
        "https://graph.facebook.com/v23.0/oauth/access_token",
        "https://graph.facebook.com/v23.0/me?fields=id,name,email",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_preset_exists_and_is_complete() {
        for n in NAMES {
            let p = preset(n).unwrap();
            assert!(p.issuer.starts_with("https://"), "{n}");
            assert!(!p.display_name.is_empty(), "{n}");
            if matches!(p.protocol, Protocol::OAuth2(_)) {
                assert!(p.authorization_endpoint.is_some() && p.token_endpoint.is_some());
                assert!(p.userinfo_endpoint.is_some(), "{n}");
            }
        }
        assert!(preset("myspace").is_none());
        let m = meta_endpoints();
        let version = |u: &str| u.split('/').find(|s| s.starts_with('v')).map(String::from);
        assert_eq!(version(m.0), Some("v23.0".into()));
        assert_eq!(version(m.1), version(m.0));
        assert_eq!(version(m.2), version(m.0));
    }
}
