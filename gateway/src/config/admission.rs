//! An upstream's `admission:` and a route's `priority:` and `waiting_room:`
//! from the raw format to the model (`crate::admission`,
//! `crate::waiting_room`).

use std::time::Duration;

use super::model::{AdaptiveLimit, Admission, Priority, WaitingRoom};
use super::raw::{RawAdmission, RawWaitingRoom};
use super::source::join;
use super::validate::duration_in;
use super::Report;

/// A count in `lo..=hi`, or the error naming the range.
fn count<T: Copy + PartialOrd + std::fmt::Display>(
    file: usize,
    v: T,
    (lo, hi): (T, T),
    field: &str,
    r: &mut Report<'_>,
) -> T {
    if v < lo || v > hi {
        r.error(
            file,
            field,
            format!("{v} is out of range"),
            Some(format!("use {lo} to {hi}")),
        );
    }
    v
}

/// An upstream's admission control, every problem reported.
pub(super) fn admission(raw: &RawAdmission, p: &str, r: &mut Report<'_>) -> Admission {
    let p = join(p, "admission");
    let adaptive = raw.adaptive.as_ref().map(|a| {
        let at = join(&p, "adaptive");
        let min = count(0, a.min.unwrap_or(8), (1, 100_000), &join(&at, "min"), r);
        let max = count(0, a.max.unwrap_or(1000), (1, 100_000), &join(&at, "max"), r);
        if min > max {
            r.error(
                0,
                &join(&at, "min"),
                format!("min {min} is above max {max}"),
                None,
            );
        }
        AdaptiveLimit { min, max }
    });
    let default_limit = adaptive.map_or(200, |a| a.min.max(a.max / 4));
    let limit = count(
        0,
        raw.limit.unwrap_or(default_limit),
        (1, 100_000),
        &join(&p, "limit"),
        r,
    );
    if let Some(a) = adaptive.filter(|a| limit < a.min || limit > a.max) {
        r.error(
            0,
            &join(&p, "limit"),
            format!(
                "an adaptive limit starts at `limit`, but {limit} is outside {}..={}",
                a.min, a.max
            ),
            Some("leave `limit` out to start at a quarter of `max`".into()),
        );
    }
    Admission {
        limit,
        adaptive,
        queue: count(
            0,
            raw.queue.unwrap_or(limit),
            (0, 1_000_000),
            &join(&p, "queue"),
            r,
        ),
        queue_timeout: duration_in(
            0,
            raw.queue_timeout.as_deref(),
            "1s",
            1,
            &join(&p, "queue_timeout"),
            r,
        ),
        retry_after: whole_seconds(duration_in(
            0,
            raw.retry_after.as_deref(),
            "5s",
            1000,
            &join(&p, "retry_after"),
            r,
        )),
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs().max(1))
}

/// A route's `priority`.
pub(super) fn priority(file: usize, raw: Option<&str>, p: &str, r: &mut Report<'_>) -> Priority {
    match raw.unwrap_or("normal") {
        "critical" => Priority::Critical,
        "normal" => Priority::Normal,
        "sheddable" => Priority::Sheddable,
        other => {
            r.error(
                file,
                &join(p, "priority"),
                format!("unknown priority `{other}`"),
                Some("`critical` (refused last, e.g. checkout), `normal` or `sheddable` (refused first)".into()),
            );
            Priority::Normal
        }
    }
}

/// A route's waiting room, every problem reported.
pub(super) fn waiting_room(
    file: usize,
    raw: &RawWaitingRoom,
    p: &str,
    r: &mut Report<'_>,
) -> WaitingRoom {
    let p = join(p, "waiting_room");
    let needed = |v: Option<u64>, field: &str, r: &mut Report<'_>| match v {
        Some(v) => count(file, v, (1, 100_000_000), &join(&p, field), r),
        None => {
            r.error(
                file,
                &join(&p, field),
                format!("a waiting room needs `{field}`"),
                Some("e.g. `waiting_room: {active_users: 2000, new_per_minute: 500, session_duration: 10m}`".into()),
            );
            1
        }
    };
    let active_users = needed(raw.active_users, "active_users", r);
    let new_per_minute = needed(raw.new_per_minute, "new_per_minute", r);
    let session_duration = duration_in(
        file,
        raw.session_duration.as_deref(),
        "10m",
        10_000,
        &join(&p, "session_duration"),
        r,
    );
    let refresh = duration_in(
        file,
        raw.refresh.as_deref(),
        "20s",
        2_000,
        &join(&p, "refresh"),
        r,
    );
    if refresh > Duration::from_secs(300) {
        r.error(
            file,
            &join(&p, "refresh"),
            "a waiting page that reloads less often than every 5 minutes loses its place".into(),
            Some("use 2s to 5m".into()),
        );
    }
    WaitingRoom {
        active_users,
        new_per_minute,
        session_duration: whole_seconds(session_duration),
        refresh: whole_seconds(refresh),
    }
}
