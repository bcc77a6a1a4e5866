//! Outbound mail: verification links, reset links and lockout notices, sent
//! through SMTP (lettre) or POSTed as signed JSON to the operator's own
//! sender. Sending happens off the request path, so a response never waits
//! on (or reveals, by its timing) whether a mail went out.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
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
    /// A new address asked for: its confirmation link, mailed to it.
    ChangeEmail,
    /// The address was changed: told to the old one.
    EmailChanged,
    /// The account was erased at the customer's request (the last mail).
    ErasureReceipt,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Verify,
        Kind::Reset,
        Kind::ResetUnknown,
        Kind::Lockout,
        Kind::PasswordChanged,
        Kind::ChangeEmail,
        Kind::EmailChanged,
        Kind::ErasureReceipt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Verify => "verify_email",
            Kind::Reset => "reset_password",
            Kind::ResetUnknown => "reset_unknown_account",
            Kind::Lockout => "lockout",
            Kind::PasswordChanged => "password_changed",
            Kind::ChangeEmail => "change_email",
            Kind::EmailChanged => "email_changed",
            Kind::ErasureReceipt => "erasure_receipt",
        }
    }
}

/// A mail ready to send (composed by `Pages::mail` from its templates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: Kind,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The link in the mail, if any (webhook senders build their own body).
    pub link: Option<String>,
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
                    .multipart(MultiPart::alternative_plain_html(
                        mail.text.clone(),
                        mail.html.clone(),
                    ))
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
                    "html": mail.html,
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
