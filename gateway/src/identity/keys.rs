//! Assertion signing keys kept in the customer directory, on the rotation
//! schedule: every node reads the same key for each slot (the first node to
//! need a slot writes it), so nodes behind one load balancer sign alike and
//! publish the same JWKS, and a restart keeps the keys.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::assertion::{kid_of, new_key_pem, Signer};
use super::rotation::Schedule;
use crate::customers::Directory;

/// The keys of the slots this node has seen, and where to get the others.
pub struct KeyStore {
    directory: Arc<dyn Directory>,
    pub schedule: Schedule,
    known: Mutex<BTreeMap<i64, String>>,
}

impl KeyStore {
    pub fn new(directory: Arc<dyn Directory>, schedule: Schedule) -> KeyStore {
        KeyStore {
            directory,
            schedule,
            known: Mutex::new(BTreeMap::new()),
        }
    }

    /// The PEM of `slot`'s key: known here, else the directory's (written
    /// now from a fresh key if no node wrote one yet).
    async fn key(&self, slot: i64, now: i64) -> Result<String, String> {
        if let Some(pem) = self.known.lock().ok().and_then(|k| k.get(&slot).cloned()) {
            return Ok(pem);
        }
        let fresh = new_key_pem().map_err(|e| e.to_string())?;
        let kid = kid_of(&fresh).map_err(|e| e.to_string())?;
        let (_, pem) = self
            .directory
            .signing_key(slot, (&kid, &fresh), now)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(slot, pem.clone());
            // Slots long gone are forgotten.
            known.retain(|s, _| *s >= slot - 2);
        }
        Ok(pem)
    }

    /// The signing key and the published keys at `now`.
    pub async fn ring(&self, now: u64) -> Result<(String, Vec<String>), String> {
        let t = now as i64;
        let active = self.key(self.schedule.active(now), t).await?;
        let mut published = Vec::new();
        for slot in self.schedule.published(now) {
            published.push(self.key(slot, t).await?);
        }
        Ok((active, published))
    }

    /// Brings `signer` to the keys of `now`. On a directory failure the
    /// current keys stay (they remain published on every node until their
    /// `keep` runs out).
    pub async fn refresh(&self, signer: &Signer, now: u64) {
        match self.ring(now).await {
            Ok((active, published)) => {
                let refs: Vec<&str> = published.iter().map(String::as_str).collect();
                if let Err(e) = signer.rotate(&active, &refs) {
                    tracing::error!(error = %e, "a stored signing key is unusable");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "signing keys not refreshed; the current ones stay")
            }
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
