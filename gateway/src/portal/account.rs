//! The account (`/_account…`): profile, ways in (link, unlink, password),
//! sessions. Every page needs a signed-in customer; every form the session's
//! CSRF token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::PasswordsOn;
use super::request::Query;
use super::respond::*;
use super::*;
use crate::accounts::mail::Kind;
use crate::accounts::{self, PASSWORD_ISSUER};
use crate::customers::{ExternalId, SetPassword, Unlink};
use crate::login::Intent;
use crate::session::Session as Browser;
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_account", get(overview))
        .route("/_account/link/{name}", get(link))
        .route("/_account/profile", post(profile))
        .route("/_account/verify", post(resend))
        .route("/_account/unlink", post(unlink))
        .route("/_account/sessions/end", post(end_session))
        .route("/_account/password", post(password))
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn overview(
    State(p): State<Arc<Portal>>,
    Query(q): Query<NoticeQuery>,
    rq: Req,
) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let notice = q
        .notice
        .as_deref()
        .and_then(notice_text)
        .map(|k| p.tr(&rq, k));
    p.account_page(&rq, &rq.snap, &me, 200, notice.as_deref(), &Errors::new())
        .await
}

async fn link(State(p): State<Arc<Portal>>, Path(name): Path<String>, rq: Req) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let intent = Intent::Link {
        customer_id: me.customer_id.clone(),
    };
    p.start_login(
        &rq,
        &rq.snap,
        &name,
        &rq.raw_host(),
        "/_account".into(),
        intent,
    )
    .await
}

/// A signed-in customer's account form with this session's CSRF token,
/// read as `T`: what every `/_account` POST starts from. Rejected with the
/// answer: sign in first, or the account page saying the form expired.
pub(super) struct Account<T> {
    pub rq: Req,
    pub me: Arc<Browser>,
    pub form: T,
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Arc<Portal>> for Account<T> {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        p: &Arc<Portal>,
    ) -> std::result::Result<Self, Response> {
        use axum::response::IntoResponse;
        let SignedIn {
            rq,
            me,
            form,
            fresh,
        } = SignedIn::<T>::from_request(req, p).await?;
        if !fresh {
            let mut errors = Errors::new();
            errors.insert("name", p.tr(&rq, "field.form_expired"));
            let page = p.account_page(&rq, &rq.snap, &me, 403, None, &errors).await;
            return Err(page.unwrap_or_else(IntoResponse::into_response));
        }
        Ok(Account { rq, me, form })
    }
}

/// A signed-in customer's form read as `T`, with whether it carries the
/// session's CSRF token, for a page that answers a stale form its own way
/// (the consent page). Rejected with the sign-in redirect when signed out.
pub(super) struct SignedIn<T> {
    pub rq: Req,
    pub me: Arc<Browser>,
    pub form: T,
    pub fresh: bool,
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Arc<Portal>>
    for SignedIn<T>
{
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        p: &Arc<Portal>,
    ) -> std::result::Result<Self, Response> {
        use axum::response::IntoResponse;
        let rq = Req::from_request(req, p)
            .await
            .map_err(IntoResponse::into_response)?;
        let me = match p.me(&rq).await.map_err(IntoResponse::into_response)? {
            Ok(me) => me,
            Err(to_sign_in) => return Err(to_sign_in),
        };
        let form = rq.form_as::<T>().map_err(IntoResponse::into_response)?;
        let fresh = p.form_ok(&rq, Some(&me), rq.form().get("csrf"));
        Ok(SignedIn {
            rq,
            me,
            form,
            fresh,
        })
    }
}

/// `/_account/profile`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ProfileForm {
    name: String,
}

/// `/_account/unlink`: the way in to remove.
#[derive(Deserialize, Default)]
#[serde(default)]
struct UnlinkForm {
    issuer: String,
    subject: String,
}

/// `/_account/sessions/end`: the session's reference.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EndForm {
    session: String,
}

/// `/_account/password`: add one (`email`, `password`) or change it
/// (`current`, `password`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PasswordForm {
    email: String,
    password: String,
    current: String,
}

/// A form with no fields of its own (the CSRF token only).
#[derive(Deserialize, Default)]
pub(super) struct NoFields {}

/// After an account change: back to the account with its notice, or the
/// 503 page when a store failed.
async fn done(
    p: &Portal,
    rq: &Req,
    me: &Browser,
    outcome: std::result::Result<&str, String>,
) -> Result<Response> {
    match outcome {
        Ok(code) => {
            p.redirect(rq, &format!("/_account?notice={code}"), &[])
                .await
        }
        Err(e) => {
            p.dependency_down(
                rq,
                &me.provider,
                "account change failed",
                &e,
                ("/_account", "common.your_account"),
            )
            .await
        }
    }
}

async fn profile(
    State(p): State<Arc<Portal>>,
    Account { rq, me, form }: Account<ProfileForm>,
) -> Result<Response> {
    let name = match accounts::normalize_name(&form.name) {
        Ok(name) => name,
        Err(why) => {
            let mut errors = Errors::new();
            errors.insert("name", p.tr(&rq, why));
            return p.account_page(&rq, &rq.snap, &me, 422, None, &errors).await;
        }
    };
    let outcome = match p
        .app
        .auth
        .directory()
        .set_name(&me.customer_id, name.as_deref())
        .await
    {
        Ok(Some(c)) => {
            p.refresh_sessions(&c).await;
            Ok("profile_saved")
        }
        Ok(None) => Ok("profile_saved"),
        Err(e) => Err(e.to_string()),
    };
    done(&p, &rq, &me, outcome).await
}

/// Sends the confirmation mail again (throttled per account).
async fn resend(
    State(p): State<Arc<Portal>>,
    Account { rq, me, .. }: Account<NoFields>,
) -> Result<Response> {
    let who = format!("cust-{}", me.customer_id);
    if let Some(answer) = p.throttled_as(&rq, "verify-mail", &who, false).await? {
        return Ok(answer);
    }
    crate::throttle::failed(&*p.app.sessions, "verify-mail", &who, &rq.snap.config.abuse).await;
    let outcome = match (&me.email, me.email_verified) {
        (Some(email), false) => {
            p.send_verification(
                &rq,
                &rq.snap,
                &me.customer_id,
                email,
                me.name.as_deref(),
                "/",
            )
            .await;
            Ok("verification_sent")
        }
        _ => Ok("profile_saved"),
    };
    done(&p, &rq, &me, outcome).await
}

async fn unlink(
    State(p): State<Arc<Portal>>,
    Account { rq, me, form }: Account<UnlinkForm>,
) -> Result<Response> {
    let id = ExternalId {
        issuer: form.issuer,
        subject: form.subject,
    };
    let outcome = match p.app.auth.directory().unlink(&me.customer_id, &id).await {
        Ok(Unlink::Unlinked) | Ok(Unlink::NotFound) => Ok("unlinked"),
        Ok(Unlink::Last) => Ok("last_way_in"),
        Err(e) => Err(e.to_string()),
    };
    done(&p, &rq, &me, outcome).await
}

/// Ends another of the customer's sessions (never this one).
async fn end_session(
    State(p): State<Arc<Portal>>,
    Account { rq, me, form }: Account<EndForm>,
) -> Result<Response> {
    let target = form.session;
    let outcome = match p.app.sessions.list(&me.customer_id, now()).await {
        Ok(list)
            if list
                .iter()
                .any(|s| s.id_hash == target && target != me.id_hash) =>
        {
            match p.app.sessions.delete(&target).await {
                Ok(()) => {
                    p.session_ended(Some(&me.customer_id), "ended_from_account", 1)
                        .await;
                    Ok("session_ended")
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(_) => Ok("session_ended"),
        Err(e) => Err(e.to_string()),
    };
    done(&p, &rq, &me, outcome).await
}

async fn password(
    State(p): State<Arc<Portal>>,
    _on: PasswordsOn,
    Account { rq, me, form }: Account<PasswordForm>,
) -> Result<Response> {
    p.account_password(&rq, &rq.snap, &me, &form).await
}

/// The catalogue key of a text `/_account?notice=…` may show.
pub(super) fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "linked" => "account.notice.linked",
        "already_linked" => "account.notice.already_linked",
        "unlinked" => "account.notice.unlinked",
        "last_way_in" => "account.notice.last_way_in",
        "password_added" => "account.notice.password_added",
        "password_changed" => "account.notice.password_changed",
        "session_ended" => "account.notice.session_ended",
        "verification_sent" => "account.notice.verification_sent",
        "profile_saved" => "account.notice.profile_saved",
        "proved" => "account.notice.proved",
        "email_sent" => "account.notice.email_sent",
        _ => return None,
    })
}

/// The current password, asked before a change that a session alone must
/// not make.
pub(super) enum Current {
    Right,
    /// Not right: why, in the customer's language.
    Wrong(String),
    /// Not checked: the 429 answer (too many wrong tries for this account)
    /// or the 503 (the hashing pool is full; nothing counted).
    Throttled(Response),
}

impl Portal {
    /// Checks `given` against the password `email` signs in with
    /// (throttled per account; a wrong one counts).
    pub(super) async fn current_password(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        email: &str,
        given: &str,
    ) -> Result<Current> {
        let who = format!("cust-{}", me.customer_id);
        if let Some(answer) = self
            .throttled_as(rq, "password-account", &who, false)
            .await?
        {
            return Ok(Current::Throttled(answer));
        }
        let right = match self.app.auth.directory().password(email).await {
            Ok(Some((c, hash))) if c.id == me.customer_id => {
                match self.verify_password(hash, given.to_string()).await {
                    Ok(right) => right,
                    Err(busy) => {
                        let back = ("/_account", "common.try_again");
                        return Ok(Current::Throttled(self.hashing_busy(rq, busy, back).await?));
                    }
                }
            }
            _ => false,
        };
        if right {
            return Ok(Current::Right);
        }
        self.app.metrics.password_failures.inc();
        crate::throttle::failed(
            &*self.app.sessions,
            "password-account",
            &who,
            &snap.config.abuse,
        )
        .await;
        Ok(Current::Wrong(self.tr(rq, "field.current_wrong")))
    }

    /// `POST /_account/password`: add a password (a new way in) or change it
    /// (the current one is asked; other sessions end).
    pub(super) async fn account_password(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        form: &PasswordForm,
    ) -> Result<Response> {
        let dir = self.app.auth.directory().clone();
        let ways = match dir.identities(&me.customer_id).await {
            Ok(w) => w,
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        &me.provider,
                        "customer directory unavailable",
                        &e,
                        ("/_account", "common.your_account"),
                    )
                    .await;
            }
        };
        let mut errors = Errors::new();
        let existing = ways
            .iter()
            .find(|w| w.issuer == PASSWORD_ISSUER)
            .map(|w| w.subject.clone());
        let email = match &existing {
            Some(e) => e.clone(),
            None => match accounts::normalize_email(&form.email) {
                Ok(e) => e,
                Err(why) => {
                    errors.insert("email", self.tr(rq, why));
                    String::new()
                }
            },
        };
        if existing.is_some() {
            match self
                .current_password(rq, snap, me, &email, &form.current)
                .await?
            {
                Current::Throttled(answer) => return Ok(answer),
                Current::Wrong(why) => {
                    errors.insert("current", why);
                }
                Current::Right => {}
            }
        }
        if errors.is_empty() {
            if let Some(why) = self.weak_password(rq, snap, &form.password, &email).await {
                errors.insert("password", why);
            }
        }
        if !errors.is_empty() {
            return self.account_page(rq, snap, me, 422, None, &errors).await;
        }
        let hashed = match self.hash_password(&form.password).await {
            Err(super::register::Hashed::Busy(busy)) => {
                return self
                    .hashing_busy(rq, busy, ("/_account", "common.try_again"))
                    .await;
            }
            other => other.map_err(|e| e.to_string()),
        };
        let result = match hashed {
            Ok(h) => dir
                .set_password(&me.customer_id, &email, &h)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(SetPassword::EmailTaken) => {
                errors.insert("email", self.tr(rq, "field.email_in_use"));
                self.account_page(rq, snap, me, 409, None, &errors).await
            }
            Ok(SetPassword::Linked) => {
                self.redirect(rq, "/_account?notice=password_added", &[])
                    .await
            }
            Ok(SetPassword::Changed) => {
                // Every other session of the customer ends; this one stays.
                let mut ended = 0;
                if let Ok(list) = self.app.sessions.list(&me.customer_id, now()).await {
                    for s in list.iter().filter(|s| s.id_hash != me.id_hash) {
                        if self.app.sessions.delete(&s.id_hash).await.is_ok() {
                            ended += 1;
                        }
                    }
                }
                self.session_ended(Some(&me.customer_id), "password_changed", ended)
                    .await;
                let link = format!("{}/_auth/reset", snap.config.accounts.public_url);
                self.mail(
                    rq,
                    snap,
                    Kind::PasswordChanged,
                    &email,
                    me.name.as_deref(),
                    Some(&link),
                );
                self.redirect(rq, "/_account?notice=password_changed", &[])
                    .await
            }
            Err(e) => {
                self.dependency_down(
                    rq,
                    &me.provider,
                    "password change failed",
                    &e,
                    ("/_account", "common.your_account"),
                )
                .await
            }
        }
    }

    /// The account page.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn account_page(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        status: u16,
        notice: Option<&str>,
        errors: &Errors,
    ) -> Result<Response> {
        let (customer, ways, sessions) = match self.account_data(me).await {
            Ok((Some(c), w, s)) => (c, w, s),
            Ok((None, _, _)) => {
                let link = Some(("/_auth/login", "common.sign_in"));
                let html = self.msg(rq, "message.account_gone", link);
                return self.page(rq, 404, html).await;
            }
            Err(e) => {
                let retry = ("/_account", "common.try_again");
                return self
                    .dependency_down(rq, &me.provider, "account page unavailable", &e, retry)
                    .await;
            }
        };
        let has_password = ways.iter().any(|w| w.issuer == PASSWORD_ISSUER);
        let linkable: Vec<Value> = snap
            .config
            .login_providers()
            .filter(|p| !ways.iter().any(|w| w.issuer == p.issuer))
            .map(|p| json!({ "name": p.name, "display_name": p.login.as_ref().map(|l| l.display_name.clone()) }))
            .collect();
        let html = self.render(
            rq,
            "account.html",
            json!({
                "csrf": me.csrf,
                "email": customer.email,
                "email_verified": customer.email_verified,
                "name": customer.name,
                "identities": self.identity_rows(rq, snap, &ways),
                "linkable": linkable,
                "passwords": snap.config.accounts.passwords,
                "has_password": has_password,
                "min_length": snap.config.accounts.password_min_length,
                "sessions": self.session_rows(rq, snap, me, &sessions),
                "notice": notice,
                "field_errors": errors,
                "errors": error_summary(errors, has_password),
                // What was typed into the email form, kept on its error.
                "new_email": rq.form().get("new_email"),
            }),
        );
        self.page(rq, status, html).await
    }

    /// The customer, their ways in and their sessions.
    async fn account_data(
        &self,
        me: &Browser,
    ) -> std::result::Result<
        (
            Option<crate::customers::Customer>,
            Vec<ExternalId>,
            Vec<Browser>,
        ),
        String,
    > {
        let dir = self.app.auth.directory();
        let id = &me.customer_id;
        let c = dir.customer(id).await.map_err(|e| e.to_string())?;
        let ways = dir.identities(id).await.map_err(|e| e.to_string())?;
        let sessions = self
            .app
            .sessions
            .list(id, now())
            .await
            .map_err(|e| e.to_string())?;
        Ok((c, ways, sessions))
    }

    /// The ways in, each with its label (a provider's display name).
    fn identity_rows(&self, rq: &Req, snap: &Snapshot, ways: &[ExternalId]) -> Vec<Value> {
        let label_of = |issuer: &str| {
            snap.config
                .providers
                .iter()
                .find(|p| p.issuer == issuer)
                .map(|p| {
                    p.login
                        .as_ref()
                        .map_or_else(|| p.name.clone(), |l| l.display_name.clone())
                })
        };
        ways.iter()
            .map(|w| {
                let label = if w.issuer == PASSWORD_ISSUER {
                    self.tra(rq, "account.password_identity", &[("email", &w.subject)])
                } else {
                    label_of(&w.issuer).unwrap_or_else(|| w.issuer.clone())
                };
                json!({ "issuer": w.issuer, "subject": w.subject, "label": label })
            })
            .collect()
    }

    /// The customer's sessions: device, when, how, and which is this one.
    fn session_rows(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        sessions: &[Browser],
    ) -> Vec<Value> {
        let method_label = |m: &str| {
            if m == PASSWORD_METHOD {
                self.tr(rq, "account.with_password")
            } else {
                snap.config
                    .providers
                    .iter()
                    .find(|p| p.name == m)
                    .and_then(|p| p.login.as_ref())
                    .map_or_else(|| m.to_string(), |l| l.display_name.clone())
            }
        };
        sessions
            .iter()
            .map(|s| {
                json!({
                    "device": s.device.clone().unwrap_or_else(|| self.tr(rq, "common.unknown_device")),
                    "current": s.id_hash == me.id_hash,
                    "created": when(s.created_at),
                    "last_seen": when(s.last_seen),
                    "method": method_label(&s.provider),
                    "ref": s.id_hash,
                })
            })
            .collect()
    }
}

/// The error summary of the account page: each error with the id of the
/// field it belongs to (`{form}-{name}`). Pure.
fn error_summary(errors: &Errors, has_password: bool) -> Vec<Value> {
    errors
        .iter()
        .map(|(field, text)| {
            let id = match *field {
                "name" => "profile-name",
                "current" => "change-current",
                "email" => "add-email",
                "new_email" => "email-new_email",
                "email_current" => "email-current",
                _ if has_password => "change-password",
                _ => "add-password",
            };
            json!({ "id": id, "text": text })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_795_988_400), "2026-11-29 21:40 UTC");
    }

    #[test]
    fn only_known_notices_are_shown() {
        assert!(notice_text("linked").is_some());
        assert!(notice_text("<script>").is_none());
    }
}
