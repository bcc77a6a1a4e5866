//! Who goes first when an upstream is at its limit. Pure: the class of a
//! request from what only the gateway knows (the route's priority, whether
//! the caller is signed in, whether it says it is a crawler), and how much
//! of the limit each class may fill.

use crate::config::model::Priority;

/// Admission classes, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A `critical` route (checkout, payment).
    Critical,
    /// A signed-in customer on a `normal` route.
    SignedIn,
    /// An anonymous visitor on a `normal` route.
    Anonymous,
    /// A `sheddable` route.
    Sheddable,
    /// A known crawler, on any route.
    Bot,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Critical,
        Class::SignedIn,
        Class::Anonymous,
        Class::Sheddable,
        Class::Bot,
    ];

    /// The `class` label of the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::SignedIn => "signed_in",
            Class::Anonymous => "anonymous",
            Class::Sheddable => "sheddable",
            Class::Bot => "bot",
        }
    }

    /// The share of the limit requests of this class may fill: the rest is
    /// kept for the classes above, so under pressure the lowest is refused
    /// first and a checkout always finds room a crawler cannot take.
    fn share(self) -> f64 {
        match self {
            Class::Critical => 1.0,
            Class::SignedIn => 0.9,
            Class::Anonymous => 0.75,
            Class::Sheddable => 0.5,
            Class::Bot => 0.25,
        }
    }

    /// Whether one more request of this class fits with `in_flight` of
    /// `limit` taken. A critical request fits whenever a slot is free.
    pub fn fits(self, in_flight: usize, limit: usize) -> bool {
        let cap = ((limit as f64) * self.share()).ceil() as usize;
        in_flight < cap.clamp(1, limit.max(1))
    }

    /// Whether it may wait for a slot (crawlers are refused at once).
    pub fn may_wait(self) -> bool {
        self != Class::Bot
    }

    /// The status a refused request gets: `429` tells a crawler to slow
    /// down; everyone else is told the service is over capacity (`503`).
    pub fn refusal_status(self) -> u16 {
        if self == Class::Bot {
            429
        } else {
            503
        }
    }
}

/// The class of one request.
pub fn classify(priority: Priority, signed_in: bool, bot: bool) -> Class {
    if bot {
        return Class::Bot;
    }
    match priority {
        Priority::Critical => Class::Critical,
        Priority::Sheddable => Class::Sheddable,
        Priority::Normal if signed_in => Class::SignedIn,
        Priority::Normal => Class::Anonymous,
    }
}

/// Words crawlers put in their `User-Agent` (Googlebot, bingbot, AhrefsBot,
/// Baiduspider, Yahoo! Slurp, facebookexternalhit …).
const CRAWLER_WORDS: [&str; 7] = [
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "scrapy",
    "archiver",
];

/// Whether a `User-Agent` names a crawler. Clients that hide are not
/// caught here; they are anonymous visitors and still come after
/// signed-in customers.
pub fn is_bot(user_agent: Option<&[u8]>) -> bool {
    let Some(ua) = user_agent else {
        return false;
    };
    CRAWLER_WORDS.iter().any(|w| {
        ua.windows(w.len())
            .any(|win| win.eq_ignore_ascii_case(w.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crawlers_are_known_by_their_user_agent() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0)",
            "Mozilla/5.0 (compatible; Baiduspider/2.0)",
            "Mozilla/5.0 (compatible; Yahoo! Slurp)",
            "facebookexternalhit/1.1",
            "Scrapy/2.11 (+https://scrapy.org)",
        ] {
            assert!(is_bot(Some(ua.as_bytes())), "{ua}");
        }
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
            "curl/8.5.0",
            "okhttp/4.12.0",
        ] {
            assert!(!is_bot(Some(ua.as_bytes())), "{ua}");
        }
        assert!(!is_bot(None));
    }

    #[test]
    fn classes_follow_priority_then_sign_in_then_bots_last() {
        use Priority::*;
        assert_eq!(classify(Critical, false, false), Class::Critical);
        assert_eq!(classify(Normal, true, false), Class::SignedIn);
        assert_eq!(classify(Normal, false, false), Class::Anonymous);
        assert_eq!(classify(Sheddable, true, false), Class::Sheddable);
        assert_eq!(classify(Critical, true, true), Class::Bot);
    }

    #[test]
    fn a_limit_of_one_still_takes_every_class_when_idle() {
        for c in Class::ALL {
            assert!(c.fits(0, 1), "{c:?}");
            assert!(!c.fits(1, 1), "{c:?}");
        }
    }

    proptest! {
        /// Whatever fits a lower class fits every higher one, nothing fits
        /// beyond the limit, and a critical request fits while a slot is free.
        #[test]
        fn shares_are_ordered_and_bounded(limit in 1usize..5000, in_flight in 0usize..6000) {
            for pair in Class::ALL.windows(2) {
                if pair[1].fits(in_flight, limit) {
                    prop_assert!(pair[0].fits(in_flight, limit));
                }
            }
            for c in Class::ALL {
                if in_flight >= limit {
                    prop_assert!(!c.fits(in_flight, limit));
                }
            }
            prop_assert_eq!(Class::Critical.fits(in_flight, limit), in_flight < limit);
        }
    }
}
