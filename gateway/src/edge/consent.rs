//! The customer's side of consent: the consent page (`/_account/consent`:
//! every purpose with its state, one-click withdraw and give, the history
//! of their decisions, a receipt per decision), the prompt that asks for
//! just the purposes a route or a new text version needs, and recording a
//! decision: ledger first (durable), then every session and cache.

use std::collections::BTreeMap;

use pingora_core::Result;
use pingora_proxy::Session;
use serde_json::{json, Value};

use super::accounts::{when, Form};
use super::endpoints::{now, query};
use super::{Ctx, Gateway};
use crate::consent::{Action, Decision, Purpose};
use crate::session::Session as Browser;
use crate::state::Snapshot;

/// `a,b` → the declared purposes with those ids, in declaration order. Pure.
pub(super) fn asked<'a>(ids: &str, purposes: &'a [Purpose]) -> Vec<&'a Purpose> {
    let wanted: Vec<&str> = ids.split(',').map(str::trim).collect();
    purposes
        .iter()
        .filter(|p| wanted.contains(&p.id.as_str()))
        .collect()
}

/// Granted purposes whose text changed since (granted for another version). Pure.
pub(super) fn outdated<'a>(
    granted: &BTreeMap<String, u32>,
    purposes: &'a [Purpose],
) -> Vec<&'a Purpose> {
    purposes
        .iter()
        .filter(|p| granted.get(&p.id).is_some_and(|v| *v != p.version))
        .collect()
}

impl Gateway {
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
        session: &Session,
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
            channel: format!("web:{raw_host}{}", session.req_header().uri.path()),
            method: method.to_string(),
            // The browser's own words, as evidence (bounded).
            user_agent: session
                .req_header()
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(512).collect()),
        }
    }

    /// `/_account/consent…` for the signed-in customer `me`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn consent_endpoint(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        me: &Browser,
        path: &str,
        q: Option<&str>,
        raw_host: &str,
        form: Option<Form>,
    ) -> Result<()> {
        if let Some(seq) = path.strip_prefix("/_account/consent/receipt/") {
            return self.receipt(session, ctx, snap, me, seq).await;
        }
        let Some(form) = form else {
            let ask = query(q, "ask").unwrap_or_default();
            let return_to =
                self.return_to(snap, ctx.here.as_ref(), query(q, "return_to").as_deref());
            let notice = query(q, "notice")
                .filter(|n| n == "saved")
                .map(|_| "Saved.");
            let first = query(q, "first").is_some();
            return self
                .consent_page(
                    session, ctx, snap, me, 200, &ask, &return_to, notice, first, None,
                )
                .await;
        };
        let purposes = &snap.config.purposes;
        let return_to = self.return_to(snap, ctx.here.as_ref(), Some(form.get("return_to")));
        let ask = form.get("ask").to_string();
        let decisions: Vec<Decision> = if !ask.is_empty() {
            // The prompt: every purpose asked gets an answer (unticked: declined).
            let ticked: Vec<&str> = form.get_all("grant");
            asked(&ask, purposes)
                .into_iter()
                .map(|p| {
                    let yes = ticked.contains(&format!("{}:{}", p.id, p.version).as_str());
                    let action = if yes { Action::Grant } else { Action::Withdraw };
                    self.decision(session, raw_host, p, action, "prompt")
                })
                .collect()
        } else {
            let p = purposes.iter().find(|p| p.id == form.get("purpose"));
            let action = Action::parse(form.get("action"));
            match (p, action) {
                (Some(p), Some(action)) if form.get("version") == p.version.to_string() => {
                    vec![self.decision(session, raw_host, p, action, "consent_page")]
                }
                (Some(_), Some(_)) => {
                    let error = "The text of this purpose changed while the page was open. Please read it again.";
                    return self
                        .consent_page(
                            session,
                            ctx,
                            snap,
                            me,
                            409,
                            "",
                            "/",
                            None,
                            false,
                            Some(error),
                        )
                        .await;
                }
                _ => {
                    let error = "That choice is not one this page offers.";
                    return self
                        .consent_page(
                            session,
                            ctx,
                            snap,
                            me,
                            422,
                            "",
                            "/",
                            None,
                            false,
                            Some(error),
                        )
                        .await;
                }
            }
        };
        match self.record_consents(&me.customer_id, &decisions).await {
            Ok(_) if !ask.is_empty() => self.redirect(session, ctx, &return_to, &[]).await,
            Ok(_) => {
                self.redirect(session, ctx, "/_account/consent?notice=saved", &[])
                    .await
            }
            Err(e) => {
                self.dependency_down(
                    session,
                    ctx,
                    &me.provider,
                    "consent could not be recorded",
                    &e,
                    ("/_account/consent", "Try again"),
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn consent_page(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        me: &Browser,
        status: u16,
        ask: &str,
        return_to: &str,
        notice: Option<&str>,
        first: bool,
        error: Option<&str>,
    ) -> Result<()> {
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
                        session,
                        ctx,
                        &me.provider,
                        "consent page unavailable",
                        &e,
                        ("/_account", "Your account"),
                    )
                    .await;
            }
        };
        let granted = crate::consent::granted(&records);
        let purposes = &snap.config.purposes;
        let asked_now = asked(ask, purposes);
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
        let html = self.app.pages.render(
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
        self.page(session, ctx, status, html).await
    }

    /// `/_account/consent/receipt/{seq}`: one of the customer's own records
    /// as a consent receipt (Kantara CR 1.1 fields), JSON.
    async fn receipt(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        snap: &Snapshot,
        me: &Browser,
        seq: &str,
    ) -> Result<()> {
        let records = self
            .app
            .auth
            .directory()
            .consent_records(&me.customer_id)
            .await
            .unwrap_or_default();
        let found = seq
            .parse::<i64>()
            .ok()
            .and_then(|n| records.iter().find(|r| r.seq == n));
        let Some(r) = found else {
            let body = json!({"error": "not_found", "error_description": "no such consent record"})
                .to_string();
            return self
                .write(session, ctx, 404, "application/json", body, &[])
                .await;
        };
        let purpose = snap
            .config
            .purposes
            .iter()
            .find(|p| p.id == r.decision.purpose);
        let body = crate::consent::receipt(r, purpose, &snap.config.pages.brand, "EU").to_string();
        let disposition = format!("attachment; filename=\"consent-receipt-{}.json\"", r.seq);
        self.write(
            session,
            ctx,
            200,
            "application/json",
            body,
            &[("content-disposition", disposition)],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, version: u32) -> Purpose {
        Purpose {
            id: id.into(),
            title: id.into(),
            text: "t".into(),
            version,
            legal_basis: "consent".into(),
            required: false,
        }
    }

    #[test]
    fn asked_and_outdated_purposes() {
        let purposes = [p("a", 1), p("b", 2), p("c", 1)];
        let ids: Vec<&str> = asked("c, a,zz", &purposes)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        let granted: BTreeMap<String, u32> = [("a".into(), 1), ("b".into(), 1)].into();
        let old: Vec<&str> = outdated(&granted, &purposes)
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(old, ["b"]);
    }
}
