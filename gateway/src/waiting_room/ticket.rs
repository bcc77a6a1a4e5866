//! The waiting-room cookie: a visitor's place in the queue, or their stay
//! inside, signed with the deployment's MAC key so no visitor can choose
//! their own place or extend their own stay. Pure.

use crate::session::{same_token, GuestKey};

/// How long a place is kept by a browser that stopped reloading.
pub const PLACE_TTL: i64 = 6 * 3600;

/// What a room's cookie says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// Inside until `until` (unix seconds).
    Inside { epoch: u64, until: i64 },
    /// Holding `place`, issued at `at`.
    Place { epoch: u64, place: u64, at: i64 },
}

/// The cookie name of the room of route `route`.
pub fn cookie_name(route: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(route.as_bytes());
    format!("__Host-omnigate-room-{}", hex::encode(&h[..4]))
}

fn mac(key: &GuestKey, route: &str, body: &str) -> Option<String> {
    key.mac_of(&["omnigate-room", route, body])
}

/// The cookie value of `t` for route `route`.
pub fn encode(t: &Ticket, route: &str, key: &GuestKey) -> Option<String> {
    let body = match t {
        Ticket::Inside { epoch, until } => format!("i.{epoch}.{until}"),
        Ticket::Place { epoch, place, at } => format!("w.{epoch}.{place}.{at}"),
    };
    let mac = mac(key, route, &body)?;
    Some(format!("{body}.{mac}"))
}

/// The ticket a cookie value carries, if this deployment issued it for
/// this route and it has not run out at `now`.
pub fn decode(v: &str, route: &str, key: &GuestKey, now: i64) -> Option<Ticket> {
    let (body, mac_sent) = v.rsplit_once('.')?;
    let (kind, rest) = body.split_once('.')?;
    let (epoch, rest) = rest.split_once('.')?;
    let epoch = epoch.parse().ok()?;
    let t = match (kind, rest.split_once('.')) {
        ("i", None) => Ticket::Inside {
            epoch,
            until: rest.parse().ok()?,
        },
        ("w", Some((place, at))) => Ticket::Place {
            epoch,
            place: place.parse().ok()?,
            at: at.parse().ok()?,
        },
        _ => return None,
    };
    let expected = mac(key, route, body)?;
    if !same_token(mac_sent, &expected) {
        return None;
    }
    let live = match t {
        Ticket::Inside { until, .. } => until > now,
        Ticket::Place { at, .. } => at <= now + 60 && now - at < PLACE_TTL,
    };
    live.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> GuestKey {
        GuestKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn tickets_round_trip_and_run_out() {
        let k = key();
        let inside = Ticket::Inside {
            epoch: 7,
            until: 1000,
        };
        let v = encode(&inside, "shop", &k).unwrap();
        assert_eq!(decode(&v, "shop", &k, 999), Some(inside));
        assert_eq!(decode(&v, "shop", &k, 1000), None, "a stay ends at until");
        let place = Ticket::Place {
            epoch: 7,
            place: 42,
            at: 500,
        };
        let v = encode(&place, "shop", &k).unwrap();
        assert_eq!(decode(&v, "shop", &k, 600), Some(place));
        assert_eq!(decode(&v, "shop", &k, 500 + PLACE_TTL), None);
        assert_eq!(
            decode(&v, "shop", &k, 300),
            None,
            "not issued in the future"
        );
    }

    #[test]
    fn a_ticket_is_good_for_its_own_room_only() {
        let k = key();
        let v = encode(
            &Ticket::Inside {
                epoch: 1,
                until: 10_000,
            },
            "shop",
            &k,
        )
        .unwrap();
        assert_eq!(decode(&v, "checkout", &k, 1), None);
        assert_eq!(cookie_name("shop").len(), "__Host-omnigate-room-".len() + 8);
        assert_ne!(cookie_name("shop"), cookie_name("checkout"));
        let other = GuestKey::new(b"another deployment's key........");
        assert_eq!(decode(&v, "shop", &other, 1), None);
    }

    proptest! {
        /// A visitor cannot move their place or lengthen their stay: any
        /// change to a value fails its MAC.
        #[test]
        fn edited_tickets_fail(place in 1u64..1_000_000, at in 0i64..1_000_000, i in 0usize..64, c in any::<char>()) {
            let k = key();
            let v = encode(&Ticket::Place { epoch: 3, place, at }, "shop", &k).unwrap();
            let mut chars: Vec<char> = v.chars().collect();
            let i = i % chars.len();
            prop_assume!(chars[i] != c);
            chars[i] = c;
            let edited: String = chars.into_iter().collect();
            prop_assert_eq!(decode(&edited, "shop", &k, at), None);
        }
    }
}
