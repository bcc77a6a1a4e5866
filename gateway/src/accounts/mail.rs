//! Outbound mail: verification links, reset links and lockout notices, sent
//! through SMTP (lettre) or POSTed as signed JSON to the operator's own
//! sender. Sending happens off the request path, so a response never waits
//! on (or reveals, by its timing) whether a mail went out.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::auth::jwks::HttpClient;
use crate::config::model::{Mail, MailChannel, SmtpTls};

/// What a mail is about; the webhook channel receives it as `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Verify,
    Reset,
    /// A reset was asked for an address with no account (sent so the
    /// response cannot tell whether an account exists; the mail can).
    ResetUnknown,
    /// Sign-in with a password is throttled after repeated failures.
    Lockout,
    /// The password was changed or reset.
    PasswordChanged,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Verify => "verify_email",
            Kind::Reset => "reset_password",
            Kind::ResetUnknown => "reset_unknown_account",
            Kind::Lockout => "lockout",
            Kind::PasswordChanged => "password_changed",
        }
    }
}

/// A mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: Kind,
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The link in the mail, if any (webhook senders build their own body).
    pub link: Option<String>,
}

/// The text of a mail. Pure.
pub fn compose(kind: Kind, brand: &str, to: &str, link: Option<&str>, ttl: &str) -> Outgoing {
    let link_line = link.map(|l| format!("\n\n{l}\n\n")).unwrap_or_default();
    let (subject, text) = match kind {
        Kind::Verify => (
            format!("Confirm your email address for {brand}"),
            format!(
                "Hello,\n\nplease confirm that this is your email address by opening this link:{link_line}The link works once and for {ttl}. If you did not create an account at {brand}, ignore this mail.\n"
            ),
        ),
        Kind::Reset => (
            format!("Reset your {brand} password"),
            format!(
                "Hello,\n\nsomeone (hopefully you) asked to reset the password of your {brand} account. Choose a new one here:{link_line}The link works once and for {ttl}. Resetting signs you out everywhere else. If you did not ask for this, ignore this mail: your password stays as it is.\n"
            ),
        ),
        Kind::ResetUnknown => (
            format!("Password reset at {brand}"),
            format!(
                "Hello,\n\nsomeone asked to reset a {brand} password for this address, but there is no account with it. If that was you, you may have signed up with another address or with another sign-in method. Otherwise, ignore this mail.\n"
            ),
        ),
        Kind::Lockout => (
            format!("Sign-in attempts on your {brand} account"),
            format!(
                "Hello,\n\nthere were repeated failed attempts to sign in to your {brand} account, so signing in with a password is paused for a while. If that was not you, nothing is needed: your password was not accepted. You can reset your password at any time:{link_line}"
            ),
        ),
        Kind::PasswordChanged => (
            format!("Your {brand} password was changed"),
            format!(
                "Hello,\n\nthe password of your {brand} account was just changed, and your other sessions were ended. If that was not you, reset your password right away:{link_line}"
            ),
        ),
    };
    Outgoing {
        kind,
        to: to.to_string(),
        subject,
        text,
        link: link.map(str::to_string),
    }
}

/// The configured channel.
pub enum Mailer {
    Smtp {
        from: Mailbox,
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
    },
    Webhook {
        from: String,
        url: String,
        secret: String,
        client: Box<HttpClient>,
    },
}

impl Mailer {
    pub fn new(mail: &Mail, client: HttpClient) -> Result<Mailer, String> {
        match &mail.channel {
            MailChannel::Smtp {
                host,
                port,
                tls,
                username,
                password,
            } => {
                let from: Mailbox = mail
                    .from
                    .parse()
                    .map_err(|e| format!("accounts.mail.from: {e}"))?;
                let builder = match tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                    SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                        .map_err(|e| format!("accounts.mail.smtp: {e}"))?,
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                        .map_err(|e| format!("accounts.mail.smtp: {e}"))?,
                };
                let mut builder = builder.port(*port).timeout(Some(Duration::from_secs(10)));
                if let (Some(u), Some(p)) = (username, password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Ok(Mailer::Smtp {
                    from,
                    transport: Box::new(builder.build()),
                })
            }
            MailChannel::Webhook { url, secret } => Ok(Mailer::Webhook {
                from: mail.from.clone(),
                url: url.clone(),
                secret: secret.clone(),
                client: Box::new(client),
            }),
        }
    }

    /// Sends one mail.
    pub async fn send(&self, mail: &Outgoing) -> Result<(), String> {
        match self {
            Mailer::Smtp { from, transport } => {
                let to: Mailbox = mail.to.parse().map_err(|e| format!("recipient: {e}"))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.text.clone())
                    .map_err(|e| e.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Mailer::Webhook {
                from,
                url,
                secret,
                client,
            } => {
                let body = serde_json::json!({
                    "kind": mail.kind.as_str(),
                    "from": from,
                    "to": mail.to,
                    "subject": mail.subject,
                    "text": mail.text,
                    "link": mail.link,
                })
                .to_string();
                let t = crate::session::unix_now();
                let sig = crate::webhook::signature(secret, t, &body);
                client
                    .post_json(url, &body, &[("omnigate-signature", sig)])
                    .await
            }
        }
    }

    /// Sends in the background, retrying a few times with backoff; failures
    /// are logged (without the link, which is a credential) and counted.
    pub fn send_later(
        self: &std::sync::Arc<Self>,
        mail: Outgoing,
        failures: prometheus::IntCounterVec,
    ) {
        let mailer = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=4 {
                match mailer.send(&mail).await {
                    Ok(()) => {
                        tracing::info!(kind = mail.kind.as_str(), attempt, "mail sent");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(kind = mail.kind.as_str(), attempt, error = %e, "mail not sent");
                        if attempt == 4 {
                            failures.with_label_values(&[mail.kind.as_str()]).inc();
                            return;
                        }
                        tokio::time::sleep(wait).await;
                        wait *= 4;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_carry_the_link_and_the_brand() {
        let m = compose(
            Kind::Verify,
            "Shop",
            "a@example.com",
            Some("https://shop.example/_auth/verify?token=abc"),
            "24 hours",
        );
        assert_eq!(m.subject, "Confirm your email address for Shop");
        assert!(m
            .text
            .contains("\n\nhttps://shop.example/_auth/verify?token=abc\n\n"));
        assert!(m.text.contains("24 hours"));
        let unknown = compose(Kind::ResetUnknown, "Shop", "b@example.com", None, "1 hour");
        assert!(unknown.link.is_none());
        assert!(unknown.text.contains("there is no account"));
    }
}
