//! Consent: purposes declared in policy files, the append-only ledger of
//! every grant and withdrawal (hash-chained per customer, so an edited or
//! removed record is detected), the state derived from it, receipts, and
//! the decision a route's consent rule makes. Everything here is pure; the
//! ledger is stored by the customer directory and enforced by the edge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A purpose as declared (`policies/consent.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purpose {
    pub id: String,
    pub title: String,
    /// The exact text shown when asking.
    pub text: String,
    pub version: u32,
    pub legal_basis: String,
    /// Needed to use the service at all (terms); asked separately from the
    /// optional ones and never bundled with them.
    pub required: bool,
    /// A sale or sharing of personal data (CCPA/CPRA): a browser sending
    /// Global Privacy Control (`Sec-GPC: 1`) withdraws it.
    pub sale: bool,
}

impl Purpose {
    /// SHA-256 of the text shown, kept in every record of this version.
    pub fn text_hash(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }
}

/// Grant or withdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Grant,
    Withdraw,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Grant => "grant",
            Action::Withdraw => "withdraw",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "grant" => Some(Action::Grant),
            "withdraw" => Some(Action::Withdraw),
            _ => None,
        }
    }
}

/// A decision to record: everything but the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub purpose: String,
    pub version: u32,
    pub text_hash: String,
    pub action: Action,
    pub at: i64,
    /// Where: `web:<host><path>` or `api:<endpoint>`.
    pub channel: String,
    /// How: `registration`, `consent_page`, `prompt`, `api:<operator channel>`.
    pub method: String,
    pub user_agent: Option<String>,
}

/// A ledger record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Position in this customer's chain, from 1.
    pub seq: i64,
    pub customer_id: String,
    #[serde(flatten)]
    pub decision: Decision,
    /// `hash` of the customer's previous record (64 zeros for the first).
    pub prev_hash: String,
    pub hash: String,
}

/// The `prev_hash` of a customer's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record: SHA-256 over its fields (length-prefixed, so no
/// two different records serialize alike) and the previous record's hash.
pub fn record_hash(customer_id: &str, seq: i64, d: &Decision, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    let seq = seq.to_string();
    let version = d.version.to_string();
    let at = d.at.to_string();
    for part in [
        customer_id,
        &seq,
        &d.purpose,
        &version,
        &d.text_hash,
        d.action.as_str(),
        &at,
        &d.channel,
        &d.method,
        d.user_agent.as_deref().unwrap_or(""),
        prev_hash,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Chains `decisions` after the customer's last record (`last`: its seq
/// and hash, if any).
pub fn chain(
    customer_id: &str,
    last: Option<(i64, String)>,
    decisions: &[Decision],
) -> Vec<Record> {
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
    decisions
        .iter()
        .map(|d| {
            seq += 1;
            let hash = record_hash(customer_id, seq, d, &prev);
            let r = Record {
                seq,
                customer_id: customer_id.to_string(),
                decision: d.clone(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            r
        })
        .collect()
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("record {0} was changed after it was written (its hash does not match its content)")]
    Altered(i64),
    #[error("the chain breaks before record {0} (a record was removed, inserted or reordered)")]
    Gap(i64),
}

/// Checks a customer's records, in order. Pure.
pub fn verify(records: &[Record]) -> Result<(), Broken> {
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        if r.seq != i as i64 + 1 || r.prev_hash != prev {
            return Err(Broken::Gap(r.seq));
        }
        if record_hash(&r.customer_id, r.seq, &r.decision, &r.prev_hash) != r.hash {
            return Err(Broken::Altered(r.seq));
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// The purposes granted now (the latest decision per purpose is a grant),
/// with the version granted. Pure.
pub fn granted(records: &[Record]) -> BTreeMap<String, u32> {
    let mut state = BTreeMap::new();
    for r in records {
        match r.decision.action {
            Action::Grant => {
                state.insert(r.decision.purpose.clone(), r.decision.version);
            }
            Action::Withdraw => {
                state.remove(&r.decision.purpose);
            }
        }
    }
    state
}

/// Of the granted purposes, those granted for the version declared now: a
/// grant of an older text does not count for the new one. Pure.
pub fn effective<'a>(
    granted: &'a BTreeMap<String, u32>,
    purposes: &'a [Purpose],
) -> impl Iterator<Item = &'a Purpose> + 'a {
    purposes
        .iter()
        .filter(move |p| granted.get(&p.id) == Some(&p.version))
}

/// Whether a request carries Global Privacy Control (`Sec-GPC: 1`). Pure.
pub fn gpc(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| v.trim_ascii() == b"1")
}

/// The granted purposes Global Privacy Control withdraws: those marked as
/// sale or sharing. Pure.
pub fn gpc_withdraws<'a>(
    granted: &BTreeMap<String, u32>,
    purposes: &'a [Purpose],
) -> Vec<&'a Purpose> {
    purposes
        .iter()
        .filter(|p| p.sale && granted.contains_key(&p.id))
        .collect()
}

/// The `X-Customer-Consents` value: `id=version` pairs, comma-separated,
/// sorted by id (empty when none). Pure.
pub fn header_value<'a>(effective: impl Iterator<Item = &'a Purpose>) -> String {
    let mut v: Vec<String> = effective
        .map(|p| format!("{}={}", p.id, p.version))
        .collect();
    v.sort();
    v.join(",")
}

/// What a route does when a required purpose is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// 403 naming the purpose.
    Deny,
    /// Web: the consent prompt for just that purpose, then back. API: as deny.
    Ask,
    /// Forward without any identity header.
    ForwardAnonymous,
}

/// A route's consent rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub require: Vec<String>,
    pub on_missing: OnMissing,
}

/// The outcome of a route's rule for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// These purposes are missing; act per `on_missing`.
    Missing(Vec<String>, OnMissing),
}

/// Decides a route's rule against the effective purposes. Pure.
pub fn decide(rule: &RouteRule, granted: &BTreeMap<String, u32>, purposes: &[Purpose]) -> Outcome {
    let missing: Vec<String> = rule
        .require
        .iter()
        .filter(|id| {
            !purposes
                .iter()
                .any(|p| &p.id == *id && granted.get(&p.id) == Some(&p.version))
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        Outcome::Allowed
    } else {
        Outcome::Missing(missing, rule.on_missing)
    }
}

/// A consent receipt for one record, with the fields of the Kantara
/// Initiative Consent Receipt Specification 1.1. Pure.
pub fn receipt(
    r: &Record,
    purpose: Option<&Purpose>,
    controller: &str,
    jurisdiction: &str,
) -> serde_json::Value {
    let title = purpose.map_or(r.decision.purpose.as_str(), |p| p.title.as_str());
    let basis = purpose.map_or("consent", |p| p.legal_basis.as_str());
    serde_json::json!({
        "version": "KI-CR-v1.1.0",
        "jurisdiction": jurisdiction,
        "consentTimestamp": r.decision.at,
        "collectionMethod": r.decision.method,
        "consentReceiptID": format!("{}-{}", r.customer_id, r.seq),
        "publicKey": null,
        "language": "en",
        "piiPrincipalId": r.customer_id,
        "piiControllers": [{ "piiController": controller, "onBehalf": false }],
        "policyUrl": null,
        "services": [{
            "service": controller,
            "purposes": [{
                "purpose": title,
                "purposeCategory": [r.decision.purpose],
                "consentType": if r.decision.action == Action::Grant { "EXPLICIT" } else { "WITHDRAWN" },
                "piiCategory": [],
                "primaryPurpose": purpose.is_some_and(|p| p.required),
                "termination": "until withdrawn",
                "thirdPartyDisclosure": r.decision.purpose.contains("shar"),
                "lawfulBasis": basis,
            }],
        }],
        "sensitive": false,
        "spiCat": [],
        // Beyond the specification: what makes the receipt checkable.
        "omnigate": {
            "action": r.decision.action,
            "purposeVersion": r.decision.version,
            "textSha256": r.decision.text_hash,
            "channel": r.decision.channel,
            "userAgent": r.decision.user_agent,
            "seq": r.seq,
            "prevHash": r.prev_hash,
            "hash": r.hash,
        },
    })
}

/// `a,b` → the declared purposes with those ids, in declaration order. Pure.
pub fn asked<'a>(ids: &str, purposes: &'a [Purpose]) -> Vec<&'a Purpose> {
    let wanted: Vec<&str> = ids.split(',').map(str::trim).collect();
    purposes
        .iter()
        .filter(|p| wanted.contains(&p.id.as_str()))
        .collect()
}

/// Granted purposes whose text changed since (granted for another version). Pure.
pub fn outdated<'a>(granted: &BTreeMap<String, u32>, purposes: &'a [Purpose]) -> Vec<&'a Purpose> {
    purposes
        .iter()
        .filter(|p| granted.get(&p.id).is_some_and(|v| *v != p.version))
        .collect()
}

#[cfg(test)]
mod tests;
