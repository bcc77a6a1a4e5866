use super::*;
use std::time::Duration;

fn rooms() -> Rooms {
    let m = crate::metrics::Metrics::new();
    Rooms::new(
        Arc::new(store::MemoryRooms::default()),
        GuestKey::new(b"a test key of thirty-two bytes.."),
        m.waiting_room.clone(),
    )
}

fn route(priority: Priority) -> Route {
    Route {
        name: "shop".into(),
        hosts: Vec::new(),
        path_prefix: "/".into(),
        methods: Vec::new(),
        upstream: "store".into(),
        kind: crate::config::model::RouteKind::Web,
        strip_prefix: false,
        max_body: 1024,
        access: crate::config::model::Access::Public,
        scopes: Vec::new(),
        register_first: false,
        verified_email: false,
        consent: None,
        case_insensitive: false,
        priority,
        waiting_room: Some(WaitingRoom {
            active_users: 2,
            new_per_minute: 100,
            session_duration: Duration::from_secs(600),
            refresh: Duration::from_secs(20),
        }),
    }
}

/// The `name=value` a `Set-Cookie` sets.
fn jar(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_third_visitor_waits_and_keeps_their_place() {
    let (rooms, r) = (rooms(), route(Priority::Normal));
    let mut inside = Vec::new();
    for _ in 0..2 {
        match rooms.door(&r, None, false, 1000).await.unwrap() {
            Door::Enter {
                set_cookie: Some(c),
            } => inside.push(jar(&c)),
            other => panic!("the room has space: {other:?}"),
        }
    }
    let Door::Wait(w) = rooms.door(&r, None, false, 1001).await.unwrap() else {
        panic!("the room is full")
    };
    assert_eq!((w.position, w.refresh), (1, 20));
    assert!(w.wait_seconds > 0);
    let place = jar(&w.set_cookie);
    let Door::Wait(again) = rooms.door(&r, Some(&place), false, 1021).await.unwrap() else {
        panic!("still full")
    };
    assert_eq!(again.position, 1, "the place is kept across reloads");
    // Visitors inside pass without a store call until half their stay is gone.
    assert_eq!(
        rooms.door(&r, Some(&inside[0]), false, 1100).await.unwrap(),
        Door::Enter { set_cookie: None }
    );
    // Once their stays end, the place is called and its holder enters.
    let Door::Enter {
        set_cookie: Some(_),
    } = rooms.door(&r, Some(&place), false, 1700).await.unwrap()
    else {
        panic!("called forward")
    };
}

#[tokio::test]
async fn a_signed_in_customer_in_checkout_goes_straight_in() {
    let (rooms, r) = (rooms(), route(Priority::Critical));
    for _ in 0..2 {
        rooms.door(&r, None, false, 0).await.unwrap();
    }
    assert!(matches!(
        rooms.door(&r, None, false, 1).await.unwrap(),
        Door::Wait(_)
    ));
    assert_eq!(
        rooms.door(&r, None, true, 1).await.unwrap(),
        Door::Enter { set_cookie: None }
    );
}

#[tokio::test]
async fn a_forged_or_foreign_cookie_is_a_new_visitor() {
    let (rooms, r) = (rooms(), route(Priority::Normal));
    for _ in 0..2 {
        rooms.door(&r, None, false, 0).await.unwrap();
    }
    let name = ticket::cookie_name("shop");
    let forged = format!("{name}=i.1.999999999.00000000000000000000000000000000");
    assert!(matches!(
        rooms.door(&r, Some(&forged), false, 1).await.unwrap(),
        Door::Wait(_)
    ));
}
