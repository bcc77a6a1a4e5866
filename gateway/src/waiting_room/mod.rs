//! Virtual waiting rooms: a route with `waiting_room:` lets in at most
//! `active_users` visitors at once and `new_per_minute` new ones a minute.
//! Whoever comes beyond that gets a place, first come first served, held
//! in a signed cookie (`ticket`), and a page that reloads itself with
//! their place and an estimated wait from the measured outflow (`plan`).
//! Signed-in customers on a `critical` route (checkout) go straight in.
//! The state is shared by every node in Redis, or kept in this process on
//! the embedded default (`store`).

pub mod plan;
pub mod store;
pub mod ticket;

use std::sync::Arc;

use crate::config::model::{Priority, Route, WaitingRoom};
use crate::session::{GuestKey, StoreError};
use plan::{Arrival, Entry, Limits};
use ticket::Ticket;

/// The waiting-room metrics, by route.
#[derive(Clone)]
pub struct Gauges {
    pub queue: prometheus::IntGaugeVec,
    pub active: prometheus::IntGaugeVec,
    pub admitted_per_minute: prometheus::IntGaugeVec,
    pub estimated_wait: prometheus::IntGaugeVec,
    pub admitted: prometheus::IntCounterVec,
}

/// What a route's waiting room says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Door {
    /// Go on; set this cookie (a new or renewed stay) on the answer.
    Enter { set_cookie: Option<String> },
    /// Wait: the visitor's place and what to tell them.
    Wait(Waiting),
}

/// A visitor in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// 1 for the next one in.
    pub position: u64,
    pub wait_seconds: u64,
    /// How often the page reloads, seconds.
    pub refresh: u64,
    pub set_cookie: String,
}

/// Every route's room, in one store.
pub struct Rooms {
    store: Arc<dyn store::RoomStore>,
    key: GuestKey,
    gauges: Gauges,
    /// Cookie names by route, computed once.
    names: std::sync::RwLock<std::collections::HashMap<String, Arc<str>>>,
}

fn limits(w: &WaitingRoom) -> Limits {
    let refresh = w.refresh.as_secs() as i64;
    Limits {
        active_users: w.active_users,
        new_per_minute: w.new_per_minute,
        session: w.session_duration.as_secs() as i64,
        claim: 2 * refresh + plan::BUCKET,
    }
}

impl Rooms {
    pub fn new(store: Arc<dyn store::RoomStore>, key: GuestKey, gauges: Gauges) -> Rooms {
        Rooms {
            store,
            key,
            gauges,
            names: Default::default(),
        }
    }

    fn cookie_name(&self, route: &str) -> Arc<str> {
        if let Some(n) = self.names.read().ok().and_then(|m| m.get(route).cloned()) {
            return n;
        }
        let n: Arc<str> = ticket::cookie_name(route).into();
        if let Ok(mut m) = self.names.write() {
            m.insert(route.to_string(), n.clone());
        }
        n
    }

    /// Whether `route`'s room lets this request in. `cookies` is the
    /// request's `Cookie` header; `signed_in`, whether it names a customer.
    /// A store that cannot answer is an error (the caller answers 503)
    /// except for visitors already inside, who stay inside.
    pub async fn door(
        &self,
        route: &Route,
        cookies: Option<&str>,
        signed_in: bool,
        now: i64,
    ) -> Result<Door, StoreError> {
        let Some(w) = &route.waiting_room else {
            return Ok(Door::Enter { set_cookie: None });
        };
        if signed_in && route.priority == Priority::Critical {
            return Ok(Door::Enter { set_cookie: None });
        }
        let name = self.cookie_name(&route.name);
        let held = crate::session::cookie(cookies, &name)
            .and_then(|v| ticket::decode(v, &route.name, &self.key, now));
        let l = limits(w);
        let (arrival, at) = match held {
            // Renewed once half the stay is gone: one store call per visitor
            // every half stay, not one per request.
            Some(Ticket::Inside { until, .. }) if until - now > l.session / 2 => {
                return Ok(Door::Enter { set_cookie: None });
            }
            Some(Ticket::Inside { epoch, until }) => (Arrival::Renew { until, epoch }, now),
            Some(Ticket::Place { epoch, place, at }) => (
                Arrival::Place {
                    ticket: place,
                    epoch,
                },
                at,
            ),
            None => (Arrival::New, now),
        };
        let outcome = match self.store.step(&route.name, arrival, now, &l).await {
            Ok(o) => o,
            Err(_) if matches!(arrival, Arrival::Renew { .. }) => {
                return Ok(Door::Enter { set_cookie: None });
            }
            Err(e) => return Err(e),
        };
        self.show(&route.name, &outcome, &l);
        let (t, door) = match outcome.entry {
            Entry::Inside { until } => {
                if !matches!(arrival, Arrival::Renew { .. }) {
                    self.count(&route.name, "entered");
                }
                let t = Ticket::Inside {
                    epoch: outcome.epoch,
                    until,
                };
                (t, None)
            }
            Entry::Waiting { ticket, ahead } => {
                let kept = matches!(held, Some(Ticket::Place { place, .. }) if place == ticket);
                if !kept {
                    self.count(&route.name, "waiting");
                }
                let at = if kept { at } else { now };
                let t = Ticket::Place {
                    epoch: outcome.epoch,
                    place: ticket,
                    at,
                };
                (
                    t,
                    Some((ahead, plan::estimated_wait(ahead, outcome.per_minute, &l))),
                )
            }
        };
        let max_age = match t {
            Ticket::Inside { until, .. } => until - now,
            Ticket::Place { .. } => ticket::PLACE_TTL,
        };
        let value = ticket::encode(&t, &route.name, &self.key)
            .ok_or_else(|| StoreError::Unavailable("cannot sign a waiting-room ticket".into()))?;
        let set_cookie = crate::session::set_cookie(&name, &value, max_age);
        Ok(match door {
            None => Door::Enter {
                set_cookie: Some(set_cookie),
            },
            Some((ahead, wait_seconds)) => Door::Wait(Waiting {
                position: ahead + 1,
                wait_seconds,
                refresh: w.refresh.as_secs(),
                set_cookie,
            }),
        })
    }

    fn count(&self, route: &str, result: &str) {
        self.gauges
            .admitted
            .with_label_values(&[route, result])
            .inc();
    }

    fn show(&self, route: &str, o: &plan::Outcome, l: &Limits) {
        let g = &self.gauges;
        let r = [route];
        g.queue.with_label_values(&r).set(o.queue as i64);
        g.active.with_label_values(&r).set(o.active as i64);
        g.admitted_per_minute
            .with_label_values(&r)
            .set(o.per_minute as i64);
        let last = if o.queue == 0 {
            0
        } else {
            plan::estimated_wait(o.queue - 1, o.per_minute, l)
        };
        g.estimated_wait.with_label_values(&r).set(last as i64);
    }

    /// Shows every configured room from the start (zero until visited).
    pub fn declare(&self, routes: &[Route]) {
        for r in routes.iter().filter(|r| r.waiting_room.is_some()) {
            let n = [r.name.as_str()];
            self.gauges.queue.with_label_values(&n);
            self.gauges.active.with_label_values(&n);
            self.gauges.admitted_per_minute.with_label_values(&n);
            self.gauges.estimated_wait.with_label_values(&n);
            for result in ["entered", "waiting"] {
                self.gauges.admitted.with_label_values(&[n[0], result]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
