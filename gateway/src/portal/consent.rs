//! Consent (`/_account/consent`): the customer's purposes with their
//! state, giving and withdrawing, the prompt a route with `on_missing: ask`
//! sends to, and each decision's receipt.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::account::SignedIn;
use super::request::Query;
use super::respond::*;
use super::*;
use crate::consent::Purpose;
use crate::consent::{Action, Decision};
use crate::session::Session as Browser;
use crate::state::Snapshot;

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/_account/consent", get(page).post(decide))
        .route("/_account/consent/receipt/{seq}", get(receipt))
}

#[derive(Deserialize)]
struct ConsentQuery {
    ask: Option<String>,
    return_to: Option<String>,
    notice: Option<String>,
    purpose: Option<String>,
    first: Option<String>,
}

/// "Saved." and what changed, for `?notice=granted|withdrawn&purpose=…`:
/// the catalogue key and the purpose's title. Pure.
fn saved_notice<'a>(
    notice: &str,
    purpose: Option<&str>,
    purposes: &'a [Purpose],
) -> Option<(&'static str, Option<&'a str>)> {
    let title = purposes
        .iter()
        .find(|p| Some(p.id.as_str()) == purpose)
        .map(|p| p.title.as_str());
    match (notice, title) {
        ("granted", Some(t)) => Some(("consent.saved_granted", Some(t))),
        ("withdrawn", Some(t)) => Some(("consent.saved_withdrawn", Some(t))),
        ("saved" | "granted" | "withdrawn", None) => Some(("consent.saved", None)),
        _ => None,
    }
}

async fn page(
    State(p): State<Arc<Portal>>,
    Query(q): Query<ConsentQuery>,
    rq: Req,
) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    let snap = &rq.snap;
    let ask = q.ask.unwrap_or_default();
    let return_to = p.return_to(snap, rq.conn.here.as_ref(), q.return_to.as_deref());
    let notice = q
        .notice
        .as_deref()
        .and_then(|n| saved_notice(n, q.purpose.as_deref(), &snap.config.purposes))
        .map(|(key, title)| p.tra(&rq, key, &[("title", title.unwrap_or(""))]));
    let first = q.first.is_some();
    p.consent_page(
        &rq,
        snap,
        &me,
        200,
        &ask,
        &return_to,
        notice.as_deref(),
        first,
        None,
    )
    .await
}

async fn receipt(
    State(p): State<Arc<Portal>>,
    Path(seq): Path<String>,
    rq: Req,
) -> Result<Response> {
    let me = match p.me(&rq).await? {
        Ok(me) => me,
        Err(to_sign_in) => return Ok(to_sign_in),
    };
    p.receipt(&rq, &rq.snap, &me, &seq).await
}

/// `POST /_account/consent`: one purpose's `action` (`grant`/`withdraw`)
/// at its text `version` from the consent page, or from the prompt the
/// purposes asked (`ask`) and those ticked (`grant`, `{id}:{version}`).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DecisionForm {
    return_to: String,
    ask: String,
    first: String,
    #[serde(deserialize_with = "super::request::many")]
    grant: Vec<String>,
    purpose: String,
    action: String,
    version: String,
}

/// A decision from the consent page (one purpose) or the prompt (every
/// purpose asked).
async fn decide(
    State(p): State<Arc<Portal>>,
    SignedIn {
        rq,
        me,
        form,
        fresh,
    }: SignedIn<DecisionForm>,
) -> Result<Response> {
    if !fresh {
        let html = p.msg(
            &rq,
            "message.consent_expired",
            Some(("/_account/consent", "consent.title")),
        );
        return p.page(&rq, 403, html).await;
    }
    let snap = &rq.snap;
    let raw_host = rq.raw_host();
    let purposes = &snap.config.purposes;
    let return_to = p.return_to(snap, rq.conn.here.as_ref(), Some(&form.return_to));
    let ask = form.ask.clone();
    let decisions: Vec<Decision> = if !ask.is_empty() {
        let ticked: Vec<&str> = form.grant.iter().map(String::as_str).collect();
        let first = form.first == "1";
        if ticked.is_empty() {
            // Nothing chosen is no decision: nothing is recorded, and the
            // prompt says how to go on (agree, or "not now").
            let error = p.tr(&rq, "consent.nothing_ticked");
            return p
                .consent_page(
                    &rq,
                    snap,
                    &me,
                    422,
                    &ask,
                    &return_to,
                    None,
                    first,
                    Some(error.as_str()),
                )
                .await;
        }
        crate::consent::asked(&ask, purposes)
            .into_iter()
            .filter_map(|purpose| {
                let yes = ticked.contains(&format!("{}:{}", purpose.id, purpose.version).as_str());
                // The first sign-in asks everything, as registration does:
                // what is left unticked there is a decline. A later prompt
                // records only what was agreed to.
                let action = match (yes, first) {
                    (true, _) => Action::Grant,
                    (false, true) => Action::Withdraw,
                    (false, false) => return None,
                };
                Some(p.decision(&rq, &raw_host, purpose, action, "prompt"))
            })
            .collect()
    } else {
        let purpose = purposes.iter().find(|x| x.id == form.purpose);
        let chosen = match (purpose, Action::parse(&form.action)) {
            (Some(purpose), Some(Action::Withdraw)) if purpose.required => {
                Err((422, "consent.required_refused"))
            }
            (Some(purpose), Some(action)) if form.version == purpose.version.to_string() => Ok(
                vec![p.decision(&rq, &raw_host, purpose, action, "consent_page")],
            ),
            (Some(_), Some(_)) => Err((409, "consent.text_changed")),
            _ => Err((422, "consent.not_offered")),
        };
        match chosen {
            Ok(decisions) => decisions,
            Err((status, key)) => {
                let error = p.tr(&rq, key);
                return p
                    .consent_page(&rq, snap, &me, status, "", "/", None, false, Some(&error))
                    .await;
            }
        }
    };
    match p.record_consents(&me.customer_id, &decisions).await {
        Ok(_) if !ask.is_empty() => p.redirect(&rq, &return_to, &[]).await,
        Ok(_) => {
            let d = decisions.first();
            let notice = match d.map(|d| d.action) {
                Some(Action::Grant) => "granted",
                _ => "withdrawn",
            };
            let purpose = d.map_or("", |d| d.purpose.as_str());
            let to = format!("/_account/consent?notice={notice}&purpose={}", enc(purpose));
            p.redirect(&rq, &to, &[]).await
        }
        Err(e) => {
            p.dependency_down(
                &rq,
                &me.provider,
                "consent could not be recorded",
                &e,
                ("/_account/consent", "common.try_again"),
            )
            .await
        }
    }
}

impl Portal {
    /// Records decisions for a customer (ledger, then sessions and caches);
    /// the customer's granted purposes after them.
    pub(super) async fn record_consents(
        &self,
        customer_id: &str,
        decisions: &[Decision],
    ) -> std::result::Result<BTreeMap<String, u32>, String> {
        self.app.record_consents(customer_id, decisions).await
    }

    /// A decision on `p` made here now.
    pub(super) fn decision(
        &self,
        rq: &Req,
        raw_host: &str,
        p: &Purpose,
        action: Action,
        method: &str,
    ) -> Decision {
        Decision {
            purpose: p.id.clone(),
            version: p.version,
            text_hash: p.text_hash(),
            action,
            at: now(),
            channel: format!("web:{raw_host}{}", rq.head().uri.path()),
            method: method.to_string(),
            // The browser's own words, as evidence (bounded).
            user_agent: rq
                .head()
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(512).collect()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn consent_page(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        status: u16,
        ask: &str,
        return_to: &str,
        notice: Option<&str>,
        first: bool,
        error: Option<&str>,
    ) -> Result<Response> {
        let records = match self
            .app
            .auth
            .directory()
            .consent_records(&me.customer_id)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return self
                    .dependency_down(
                        rq,
                        &me.provider,
                        "consent page unavailable",
                        &e,
                        ("/_account", "common.your_account"),
                    )
                    .await;
            }
        };
        let granted = crate::consent::granted(&records);
        let purposes = &snap.config.purposes;
        let asked_now = crate::consent::asked(ask, purposes);
        let list: Vec<Value> = purposes
            .iter()
            .map(|p| {
                let since = records
                    .iter()
                    .rev()
                    .find(|r| r.decision.purpose == p.id && r.decision.action == Action::Grant)
                    .map(|r| when(r.decision.at));
                let is_granted = granted.get(&p.id) == Some(&p.version);
                json!({
                    "id": p.id, "title": p.title, "text": p.text, "version": p.version,
                    "required": p.required,
                    "granted": is_granted,
                    "since": since,
                    "outdated": granted.get(&p.id).filter(|v| **v != p.version),
                })
            })
            .collect();
        let history: Vec<Value> = records
            .iter()
            .rev()
            .map(|r| {
                let title = purposes
                    .iter()
                    .find(|p| p.id == r.decision.purpose)
                    .map_or(r.decision.purpose.as_str(), |p| p.title.as_str());
                json!({
                    "seq": r.seq, "when": when(r.decision.at), "title": title,
                    "version": r.decision.version,
                    "action": match (r.decision.action, r.decision.method.as_str()) {
                        (Action::Grant, _) => "gave",
                        (Action::Withdraw, "registration" | "prompt") => "declined",
                        (Action::Withdraw, _) => "withdrew",
                    },
                    "method": r.decision.method.replace('_', " "),
                })
            })
            .collect();
        let html = self.render(
            rq,
            "consent.html",
            json!({
                "csrf": me.csrf,
                "asking": !asked_now.is_empty(),
                "asked": asked_now,
                "ask_ids": asked_now.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(","),
                "first": first,
                "return_to": return_to,
                "purposes": list,
                "history": history,
                "notice": notice,
                "error": error,
            }),
        );
        self.page(rq, status, html).await
    }

    /// `/_account/consent/receipt/{seq}`: one of the customer's own records
    /// as a consent receipt (Kantara CR 1.1 fields), JSON.
    pub(super) async fn receipt(
        &self,
        rq: &Req,
        snap: &Snapshot,
        me: &Browser,
        seq: &str,
    ) -> Result<Response> {
        let records = self
            .app
            .auth
            .directory()
            .consent_records(&me.customer_id)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let found = seq
            .parse::<i64>()
            .ok()
            .and_then(|n| records.iter().find(|r| r.seq == n));
        let Some(r) = found else {
            let body = json!({"error": "not_found", "error_description": "no such consent record"})
                .to_string();
            return self.write(rq, 404, "application/json", body, &[]).await;
        };
        let purpose = snap
            .config
            .purposes
            .iter()
            .find(|p| p.id == r.decision.purpose);
        let receipt = crate::consent::receipt(r, purpose, &snap.config.pages.brand, "EU");
        if rq.query("format").as_deref() == Some("json") {
            let disposition = format!("attachment; filename=\"consent-receipt-{}.json\"", r.seq);
            let headers = [("content-disposition", disposition)];
            return self
                .write(rq, 200, "application/json", receipt.to_string(), &headers)
                .await;
        }
        let html = self.render(
            rq,
            "receipt.html",
            json!({
                "seq": r.seq,
                "title": purpose.map_or(r.decision.purpose.as_str(), |p| p.title.as_str()),
                "text": purpose.filter(|p| p.version == r.decision.version).map(|p| p.text.as_str()),
                "version": r.decision.version,
                "gave": r.decision.action == Action::Grant,
                "when": when(r.decision.at),
                "method": r.decision.method.replace('_', " "),
                "channel": r.decision.channel,
                "controller": snap.config.pages.brand,
                "receipt_id": receipt["consentReceiptID"],
                "hash": r.hash,
            }),
        );
        self.page(rq, 200, html).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_says_what_changed() {
        let purposes = [Purpose {
            id: "news".into(),
            title: "News".into(),
            text: "t".into(),
            version: 1,
            legal_basis: "consent".into(),
            required: false,
            sale: false,
        }];
        let said = |n, p| saved_notice(n, p, &purposes);
        assert_eq!(
            said("granted", Some("news")).unwrap(),
            ("consent.saved_granted", Some("News"))
        );
        assert_eq!(
            said("withdrawn", Some("news")).unwrap(),
            ("consent.saved_withdrawn", Some("News"))
        );
        assert_eq!(
            said("granted", Some("<script>")).unwrap(),
            ("consent.saved", None)
        );
        assert!(said("<b>", None).is_none());
    }
}
