//! The waiting room's arithmetic, pure: one step of a room's shared state
//! for one visitor, and the wait a place is shown. Both stores run it (the
//! in-memory one here, Redis as a Lua script with the same steps), and a
//! test holds the two to the same answers.
//!
//! A room keeps two counters and two histograms in 5-second buckets:
//! `issued` (the last place handed out) and `serving` (every place up to it
//! may enter); visitors inside by the bucket their stay ends in, and
//! entries by the bucket they happened in (the last minute's are the
//! outflow). First come, first served: places are numbered in arrival
//! order, and `serving` moves forward as the limits allow.

use std::collections::BTreeMap;

/// Bucket width, seconds.
pub const BUCKET: i64 = 5;
/// The window the entry rate is measured over, seconds.
pub const MINUTE: i64 = 60;

/// The limits of one room, in seconds and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub active_users: u64,
    pub new_per_minute: u64,
    /// A visitor's stay after their last request.
    pub session: i64,
    /// How long a place called forward is held for its visitor to claim
    /// (about two reloads of the waiting page).
    pub claim: i64,
}

/// A room's shared state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    pub epoch: u64,
    pub issued: u64,
    pub serving: u64,
    /// Visitors inside, by the bucket their stay ends in.
    pub inside: BTreeMap<i64, u64>,
    /// Entries, by the bucket they happened in.
    pub entries: BTreeMap<i64, u64>,
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Nobody this room knows.
    New,
    /// A visitor holding place `ticket` of the room's `epoch`.
    Place { ticket: u64, epoch: u64 },
    /// A visitor inside whose stay, ending at `until`, is renewed.
    Renew { until: i64, epoch: u64 },
}

/// Where the visitor is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Inside until this time.
    Inside { until: i64 },
    /// Waiting: their place, and how many places are before theirs.
    Waiting { ticket: u64, ahead: u64 },
}

/// One step's answer, with what the room looks like after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub entry: Entry,
    pub epoch: u64,
    /// Places handed out and not yet called.
    pub queue: u64,
    pub active: u64,
    /// Entries in the last minute.
    pub per_minute: u64,
}

/// The bucket time `t` falls in, rounded up (stays end at or after it).
pub fn bucket_up(t: i64) -> i64 {
    t.div_euclid(BUCKET) * BUCKET + if t.rem_euclid(BUCKET) == 0 { 0 } else { BUCKET }
}

/// The bucket time `t` falls in, rounded down.
pub fn bucket_down(t: i64) -> i64 {
    t.div_euclid(BUCKET) * BUCKET
}

fn add(map: &mut BTreeMap<i64, u64>, key: i64, n: u64) {
    if n > 0 {
        *map.entry(key).or_default() += n;
    }
}

impl Room {
    /// Forgets stays that ended and entries older than a minute.
    fn expire(&mut self, now: i64) {
        self.inside.retain(|&end, _| end > now);
        self.entries.retain(|&at, _| at > now - MINUTE);
    }

    fn active(&self) -> u64 {
        self.inside.values().sum()
    }

    fn per_minute(&self) -> u64 {
        self.entries.values().sum()
    }

    /// Entries the limits allow now.
    fn room_for(&self, l: &Limits) -> u64 {
        let by_size = l.active_users.saturating_sub(self.active());
        let by_rate = l.new_per_minute.saturating_sub(self.per_minute());
        by_size.min(by_rate)
    }

    /// Lets `n` visitors in now, staying until `until`.
    fn enter(&mut self, n: u64, now: i64, until: i64) {
        add(&mut self.inside, bucket_up(until), n);
        add(&mut self.entries, bucket_down(now), n);
    }

    /// Calls waiting places forward as far as the limits allow; a called
    /// place is counted inside for `claim` seconds until its visitor comes.
    fn call_forward(&mut self, now: i64, l: &Limits) {
        let k = self.room_for(l).min(self.issued - self.serving);
        if k > 0 {
            self.serving += k;
            self.enter(k, now, now + l.claim);
        }
    }

    fn outcome(&self, entry: Entry) -> Outcome {
        Outcome {
            entry,
            epoch: self.epoch,
            queue: self.issued - self.serving,
            active: self.active(),
            per_minute: self.per_minute(),
        }
    }
}

/// One visitor's step through the room at time `now`.
pub fn step(room: &mut Room, arrival: Arrival, now: i64, l: &Limits) -> Outcome {
    room.expire(now);
    room.call_forward(now, l);
    let until = now + l.session;
    let entry = match arrival {
        Arrival::New if room.issued == room.serving && room.room_for(l) > 0 => {
            room.enter(1, now, until);
            Entry::Inside { until }
        }
        Arrival::New => {
            room.issued += 1;
            Entry::Waiting {
                ticket: room.issued,
                ahead: room.issued - room.serving - 1,
            }
        }
        // A place of a room whose state was lost: queue anew.
        Arrival::Place { ticket, epoch } if epoch != room.epoch || ticket > room.issued => {
            return step(room, Arrival::New, now, l);
        }
        Arrival::Place { ticket, .. } if ticket <= room.serving => {
            add(&mut room.inside, bucket_up(until), 1);
            Entry::Inside { until }
        }
        Arrival::Place { ticket, .. } => Entry::Waiting {
            ticket,
            ahead: ticket - room.serving - 1,
        },
        Arrival::Renew { until: old, epoch } => {
            let key = bucket_up(old);
            if let Some(n) = room.inside.get_mut(&key).filter(|_| epoch == room.epoch) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    room.inside.remove(&key);
                }
            }
            add(&mut room.inside, bucket_up(until), 1);
            Entry::Inside { until }
        }
    };
    room.outcome(entry)
}

/// The entries per minute a wait is estimated from: the measured outflow,
/// or before anyone entered, the turnover the limits allow.
pub fn outflow(per_minute: u64, l: &Limits) -> u64 {
    if per_minute > 0 {
        return per_minute;
    }
    let turnover = l.active_users.saturating_mul(60) / (l.session.max(1) as u64);
    turnover.clamp(1, l.new_per_minute.max(1))
}

/// Seconds until a visitor with `ahead` places before theirs gets in.
pub fn estimated_wait(ahead: u64, per_minute: u64, l: &Limits) -> u64 {
    let rate = outflow(per_minute, l);
    (ahead + 1).saturating_mul(60).div_ceil(rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits {
        active_users: 3,
        new_per_minute: 100,
        session: 300,
        claim: 45,
    };

    fn inside(o: &Outcome) -> bool {
        matches!(o.entry, Entry::Inside { .. })
    }

    #[test]
    fn beyond_the_limit_visitors_wait_in_arrival_order() {
        let mut r = Room::default();
        for _ in 0..3 {
            assert!(inside(&step(&mut r, Arrival::New, 1000, &L)));
        }
        let a = step(&mut r, Arrival::New, 1001, &L);
        let b = step(&mut r, Arrival::New, 1002, &L);
        assert_eq!(
            a.entry,
            Entry::Waiting {
                ticket: 1,
                ahead: 0
            }
        );
        assert_eq!(
            b.entry,
            Entry::Waiting {
                ticket: 2,
                ahead: 1
            }
        );
        assert_eq!(b.queue, 2);
        // When seats free, those waiting are called first; a newcomer
        // takes only what is left.
        let later = 1000 + L.session + BUCKET;
        let c = step(&mut r, Arrival::New, later, &L);
        assert!(inside(&c), "one seat was left after calling two places");
        assert!(inside(&step(
            &mut r,
            Arrival::Place {
                ticket: 1,
                epoch: 0
            },
            later,
            &L
        )));
        assert!(inside(&step(
            &mut r,
            Arrival::Place {
                ticket: 2,
                epoch: 0
            },
            later,
            &L
        )));
        let d = step(&mut r, Arrival::New, later, &L);
        assert_eq!(
            d.entry,
            Entry::Waiting {
                ticket: 3,
                ahead: 0
            }
        );
    }

    #[test]
    fn the_entry_rate_holds_even_with_seats_free() {
        let l = Limits {
            active_users: 1000,
            new_per_minute: 2,
            ..L
        };
        let mut r = Room::default();
        assert!(inside(&step(&mut r, Arrival::New, 0, &l)));
        assert!(inside(&step(&mut r, Arrival::New, 1, &l)));
        assert!(!inside(&step(&mut r, Arrival::New, 2, &l)));
        // A minute on, the first place is called.
        let o = step(
            &mut r,
            Arrival::Place {
                ticket: 1,
                epoch: 0,
            },
            MINUTE + BUCKET,
            &l,
        );
        assert!(inside(&o));
    }

    #[test]
    fn renewing_a_stay_moves_it_and_does_not_count_twice() {
        let mut r = Room::default();
        let Entry::Inside { until } = step(&mut r, Arrival::New, 0, &L).entry else {
            panic!("an empty room lets in")
        };
        let o = step(&mut r, Arrival::Renew { until, epoch: 0 }, 200, &L);
        assert_eq!(o.active, 1);
        assert_eq!(o.entry, Entry::Inside { until: 500 });
        // The old stay would have ended at 300; the renewed one holds.
        assert_eq!(
            step(
                &mut r,
                Arrival::Renew {
                    until: 500,
                    epoch: 0
                },
                400,
                &L
            )
            .active,
            1
        );
    }

    #[test]
    fn a_place_from_a_lost_room_queues_again() {
        let mut r = Room::default();
        for _ in 0..3 {
            step(&mut r, Arrival::New, 0, &L);
        }
        let o = step(
            &mut r,
            Arrival::Place {
                ticket: 99,
                epoch: 0,
            },
            1,
            &L,
        );
        assert_eq!(
            o.entry,
            Entry::Waiting {
                ticket: 1,
                ahead: 0
            }
        );
    }

    #[test]
    fn waits_come_from_the_outflow() {
        // 30 entries a minute: the 30th in line waits about a minute.
        assert_eq!(estimated_wait(29, 30, &L), 60);
        assert_eq!(estimated_wait(0, 30, &L), 2);
        // No entries yet: the turnover of 3 seats every 5 minutes, at least one a minute.
        assert_eq!(outflow(0, &L), 1);
        assert_eq!(estimated_wait(4, 0, &L), 300);
    }

    proptest! {
        /// Whatever arrives, nobody enters beyond the limits, places are
        /// called in order, and the queue is what was issued and not called.
        #[test]
        fn limits_and_order_hold(
            steps in proptest::collection::vec((0u8..3, 0i64..20, 0u64..40), 1..300),
        ) {
            let l = Limits { active_users: 5, new_per_minute: 8, session: 60, claim: 20 };
            let mut r = Room::default();
            let mut now = 0;
            let mut served = 0;
            for (kind, dt, n) in steps {
                now += dt;
                let arrival = match kind {
                    0 => Arrival::New,
                    1 => Arrival::Place { ticket: n, epoch: 0 },
                    _ => Arrival::Renew { until: now + n as i64, epoch: 0 },
                };
                let o = step(&mut r, arrival, now, &l);
                prop_assert!(r.serving >= served, "serving never goes back");
                served = r.serving;
                prop_assert!(r.serving <= r.issued);
                prop_assert_eq!(o.queue, r.issued - r.serving);
                // New entries respect the rate; renewals and claims only
                // add stays of visitors already counted.
                prop_assert!(o.per_minute <= l.new_per_minute);
                if let Entry::Waiting { ticket, ahead } = o.entry {
                    prop_assert!(ticket > r.serving);
                    prop_assert_eq!(ahead, ticket - r.serving - 1);
                }
            }
        }
    }
}
