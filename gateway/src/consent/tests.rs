use super::*;

fn purpose(id: &str, version: u32) -> Purpose {
    Purpose {
        id: id.into(),
        title: format!("Title of {id}"),
        text: format!("We use your data for {id}."),
        version,
        legal_basis: "consent".into(),
        required: false,
        sale: false,
    }
}

fn decision(purpose: &str, version: u32, action: Action, at: i64) -> Decision {
    Decision {
        purpose: purpose.into(),
        version,
        text_hash: "t".into(),
        action,
        at,
        channel: "web:shop.test/_auth/register".into(),
        method: "registration".into(),
        user_agent: Some("Firefox on Linux".into()),
    }
}

#[test]
fn the_chain_links_records_and_detects_edits_and_gaps() {
    let first = chain(
        "cus_1",
        None,
        &[
            decision("marketing_email", 1, Action::Grant, 10),
            decision("partner_sharing", 1, Action::Grant, 10),
        ],
    );
    assert_eq!(first[0].prev_hash, GENESIS);
    assert_eq!(first[1].prev_hash, first[0].hash);
    let last = first.last().map(|r| (r.seq, r.hash.clone()));
    let more = chain(
        "cus_1",
        last,
        &[decision("marketing_email", 1, Action::Withdraw, 20)],
    );
    assert_eq!(more[0].seq, 3);
    let mut all = [first.clone(), more].concat();
    assert_eq!(verify(&all), Ok(()));

    // An edited field, even with a recomputed hash of its own, breaks the next link.
    let mut edited = all.clone();
    edited[1].decision.action = Action::Withdraw;
    assert_eq!(verify(&edited), Err(Broken::Altered(2)));
    edited[1].hash = record_hash("cus_1", 2, &edited[1].decision, &edited[1].prev_hash);
    assert_eq!(verify(&edited), Err(Broken::Gap(3)));
    // A removed record.
    all.remove(1);
    assert_eq!(verify(&all), Err(Broken::Gap(3)));
}

#[test]
fn state_is_derived_from_the_latest_decision_and_the_declared_version() {
    let records = chain(
        "cus_1",
        None,
        &[
            decision("marketing_email", 1, Action::Grant, 10),
            decision("analytics", 1, Action::Grant, 11),
            decision("analytics", 1, Action::Withdraw, 12),
            decision("partner_sharing", 1, Action::Grant, 13),
        ],
    );
    let g = granted(&records);
    assert_eq!(
        g.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
        [("marketing_email", 1), ("partner_sharing", 1)]
    );
    // partner_sharing's text is now version 2: the old grant does not count.
    let purposes = [
        purpose("marketing_email", 1),
        purpose("partner_sharing", 2),
        purpose("analytics", 1),
    ];
    assert_eq!(header_value(effective(&g, &purposes)), "marketing_email=1");
    let rule = RouteRule {
        require: vec!["partner_sharing".into(), "marketing_email".into()],
        on_missing: OnMissing::Ask,
    };
    assert_eq!(
        decide(&rule, &g, &purposes),
        Outcome::Missing(vec!["partner_sharing".into()], OnMissing::Ask)
    );
    let ok = RouteRule {
        require: vec!["marketing_email".into()],
        on_missing: OnMissing::Deny,
    };
    assert_eq!(decide(&ok, &g, &purposes), Outcome::Allowed);
    assert_eq!(header_value(effective(&BTreeMap::new(), &purposes)), "");
}

#[test]
fn receipts_carry_the_kantara_fields_and_the_chain() {
    let r = &chain(
        "cus_1",
        None,
        &[decision("partner_sharing", 3, Action::Grant, 1_700_000_000)],
    )[0];
    let p = purpose("partner_sharing", 3);
    let v = receipt(r, Some(&p), "Shop Ltd", "EU");
    for field in [
        "version",
        "jurisdiction",
        "consentTimestamp",
        "collectionMethod",
        "consentReceiptID",
        "language",
        "piiPrincipalId",
        "piiControllers",
        "services",
        "sensitive",
        "spiCat",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    assert_eq!(v["version"], "KI-CR-v1.1.0");
    assert_eq!(
        v["services"][0]["purposes"][0]["purpose"],
        "Title of partner_sharing"
    );
    assert_eq!(v["services"][0]["purposes"][0]["consentType"], "EXPLICIT");
    assert_eq!(v["omnigate"]["hash"], r.hash.as_str());
    assert_eq!(v["omnigate"]["purposeVersion"], 3);
}

#[test]
fn asked_and_outdated_purposes() {
    let purposes = [purpose("a", 1), purpose("b", 2), purpose("c", 1)];
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
