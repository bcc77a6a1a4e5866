//! The data map as the proxy sees it: which upstream received which
//! customer's identity, aggregated in memory per customer × upstream and
//! taken out in batches by the flusher (no store write per request). The
//! aggregate is bounded: past `max_pairs` distinct pairs, new pairs are
//! counted as dropped until the next flush empties it.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Identity fields an upstream can receive (bits of [`Seen::fields`]).
pub const FIELD_ID: u8 = 1;
pub const FIELD_EMAIL: u8 = 2;
pub const FIELD_NAME: u8 = 4;

/// The names of the bits in `fields`, in order. Pure.
pub fn field_names(fields: u8) -> Vec<&'static str> {
    [
        (FIELD_ID, "id"),
        (FIELD_EMAIL, "email"),
        (FIELD_NAME, "name"),
    ]
    .into_iter()
    .filter(|(bit, _)| fields & bit != 0)
    .map(|(_, n)| n)
    .collect()
}

/// What one upstream received of one customer since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub customer_id: String,
    pub system: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub fields: u8,
    /// Purposes granted when it was sent (ids, sorted, distinct).
    pub purposes: Vec<String>,
}

impl Seen {
    /// Folds a later (or earlier) sighting of the same pair in. Pure.
    pub fn merge(&mut self, other: &Seen) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.fields |= other.fields;
        for p in &other.purposes {
            if let Err(at) = self.purposes.binary_search(p) {
                self.purposes.insert(at, p.clone());
            }
        }
    }
}

/// The purpose ids of an `X-Customer-Consents` value (`id=version,…`). Pure.
pub fn purpose_ids(consents: &str) -> impl Iterator<Item = &str> {
    consents
        .split(',')
        .filter_map(|p| p.split('=').next())
        .filter(|id| !id.is_empty())
}

struct Entry {
    system: Arc<str>,
    first: i64,
    last: i64,
    fields: u8,
    purposes: Vec<Box<str>>,
    /// The consents value last folded in: the same one again costs nothing.
    consents: Box<str>,
}

type Shard = HashMap<String, Vec<Entry>>;

const SHARDS: usize = 16;

/// The in-memory aggregate.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
    pairs: AtomicUsize,
    max_pairs: AtomicUsize,
    dropped: AtomicUsize,
}

impl Recorder {
    pub fn new(max_pairs: usize) -> Recorder {
        Recorder {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            pairs: AtomicUsize::new(0),
            max_pairs: AtomicUsize::new(max_pairs),
            dropped: AtomicUsize::new(0),
        }
    }

    /// A reload may change the bound.
    pub fn set_max_pairs(&self, n: usize) {
        self.max_pairs.store(n, Ordering::Relaxed);
    }

    fn shard(&self, customer_id: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(customer_id) as usize) % SHARDS]
    }

    /// Notes that `system` received `fields` of the customer at `now`,
    /// under the granted purposes `consents`. Allocates only for a new pair.
    pub fn record(&self, customer_id: &str, system: &str, fields: u8, consents: &str, now: i64) {
        let Ok(mut shard) = self.shard(customer_id).lock() else {
            return;
        };
        if let Some(entries) = shard.get_mut(customer_id) {
            if let Some(e) = entries.iter_mut().find(|e| &*e.system == system) {
                e.last = e.last.max(now);
                e.first = e.first.min(now);
                e.fields |= fields;
                if &*e.consents != consents {
                    fold_purposes(&mut e.purposes, consents);
                    e.consents = consents.into();
                }
                return;
            }
        }
        if self.pairs.load(Ordering::Relaxed) >= self.max_pairs.load(Ordering::Relaxed) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.pairs.fetch_add(1, Ordering::Relaxed);
        let mut purposes = Vec::new();
        fold_purposes(&mut purposes, consents);
        shard
            .entry(customer_id.to_string())
            .or_default()
            .push(Entry {
                system: system.into(),
                first: now,
                last: now,
                fields,
                purposes,
                consents: consents.into(),
            });
    }

    /// Takes everything recorded so far, leaving the aggregate empty.
    pub fn take(&self) -> Vec<Seen> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let taken = match shard.lock() {
                Ok(mut s) => std::mem::take(&mut *s),
                Err(_) => continue,
            };
            for (customer_id, entries) in taken {
                for e in entries {
                    out.push(Seen {
                        customer_id: customer_id.clone(),
                        system: e.system.to_string(),
                        first_seen: e.first,
                        last_seen: e.last,
                        fields: e.fields,
                        purposes: e.purposes.iter().map(|p| p.to_string()).collect(),
                    });
                }
            }
        }
        self.pairs
            .fetch_sub(out.len().min(self.pairs()), Ordering::Relaxed);
        out
    }

    /// Puts back what a failed flush took, so nothing seen is lost.
    pub fn restore(&self, rows: Vec<Seen>) {
        for s in rows {
            let consents = s.purposes.join(",");
            self.record(&s.customer_id, &s.system, s.fields, &consents, s.first_seen);
            self.record(&s.customer_id, &s.system, s.fields, &consents, s.last_seen);
        }
    }

    /// Distinct pairs held now.
    pub fn pairs(&self) -> usize {
        self.pairs.load(Ordering::Relaxed)
    }

    /// Sightings of new pairs not kept because the aggregate was full.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes the aggregate holds (heap), estimated from what it keeps.
    pub fn approx_bytes(&self) -> usize {
        let mut n = 0;
        for shard in &self.shards {
            let Ok(s) = shard.lock() else { continue };
            n += s.capacity() * (std::mem::size_of::<(String, Vec<Entry>)>() + 8);
            for (k, entries) in s.iter() {
                n += k.capacity() + entries.capacity() * std::mem::size_of::<Entry>();
                for e in entries {
                    n += e.system.len() + 16 + e.consents.len();
                    n += e.purposes.iter().map(|p| p.len() + 16).sum::<usize>();
                }
            }
        }
        n
    }
}

/// Adds the ids of `consents` to a sorted, distinct list.
fn fold_purposes(into: &mut Vec<Box<str>>, consents: &str) {
    for id in purpose_ids(consents) {
        if let Err(at) = into.binary_search_by(|p| (**p).cmp(id)) {
            into.insert(at, id.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairs_aggregate_until_taken() {
        let r = Recorder::new(10);
        r.record("cus_a", "store", FIELD_ID, "terms=1", 100);
        r.record(
            "cus_a",
            "store",
            FIELD_ID | FIELD_EMAIL,
            "analytics=1,terms=1",
            105,
        );
        r.record("cus_a", "crm", FIELD_ID, "", 101);
        assert_eq!(r.pairs(), 2);
        let mut rows = r.take();
        rows.sort_by(|a, b| a.system.cmp(&b.system));
        assert_eq!(r.pairs(), 0);
        assert_eq!(rows[1].system, "store");
        assert_eq!((rows[1].first_seen, rows[1].last_seen), (100, 105));
        assert_eq!(rows[1].fields, FIELD_ID | FIELD_EMAIL);
        assert_eq!(rows[1].purposes, vec!["analytics", "terms"]);
        assert!(rows[0].purposes.is_empty());
        assert!(r.take().is_empty());
    }

    #[test]
    fn the_bound_drops_new_pairs_not_known_ones() {
        let r = Recorder::new(1);
        r.record("cus_a", "store", FIELD_ID, "", 1);
        r.record("cus_b", "store", FIELD_ID, "", 2);
        r.record("cus_a", "store", FIELD_NAME, "", 3);
        assert_eq!((r.pairs(), r.dropped()), (1, 1));
        let rows = r.take();
        assert_eq!(rows[0].fields, FIELD_ID | FIELD_NAME);
        r.restore(rows);
        assert_eq!(r.take()[0].last_seen, 3);
    }

    #[test]
    fn field_names_in_order() {
        assert_eq!(field_names(FIELD_NAME | FIELD_ID), vec!["id", "name"]);
        assert!(field_names(0).is_empty());
    }

    proptest! {
        /// However sightings are split between flushes, merging the batches
        /// gives what one batch would have held.
        #[test]
        fn merging_batches_is_one_batch(
            seen in proptest::collection::vec((0u8..3, 0u8..2, 1u8..8, 0i64..1000, 0u8..4), 1..40),
            cut in 0usize..40,
        ) {
            let consents = ["", "terms=1", "analytics=1,terms=1", "ads=2"];
            let all = Recorder::new(1000);
            let split = [Recorder::new(1000), Recorder::new(1000)];
            for (i, (c, s, f, t, p)) in seen.iter().enumerate() {
                let (c, s) = (format!("cus_{c}"), format!("sys{s}"));
                all.record(&c, &s, *f, consents[*p as usize], *t);
                split[usize::from(i >= cut)].record(&c, &s, *f, consents[*p as usize], *t);
            }
            let key = |v: &Seen| (v.customer_id.clone(), v.system.clone());
            let mut merged: HashMap<(String, String), Seen> = HashMap::new();
            for batch in split.iter().map(Recorder::take) {
                for s in batch {
                    match merged.get_mut(&key(&s)) {
                        Some(m) => m.merge(&s),
                        None => { merged.insert(key(&s), s); }
                    }
                }
            }
            let whole: HashMap<(String, String), Seen> =
                all.take().into_iter().map(|s| (key(&s), s)).collect();
            prop_assert_eq!(whole, merged);
        }
    }
}
