//! The demo web store: products, a cart (a guest's, merged into the
//! customer's when they sign in), checkout and orders, all in memory. It
//! trusts the identity headers because only the gateway can set them.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{view, Seen};
use crate::httpd::{respond, Resp};
use crate::problem::escape;

/// The demo's products: id, name, price in cents.
const PRODUCTS: [(u32, &str, u32); 3] = [
    (1, "Trail running shoes", 8900),
    (2, "Merino wool socks", 1450),
    (3, "Insulated water bottle", 2400),
];

/// Carts and orders kept at most for this many visitors (a demo, bounded).
const MAX_VISITORS: usize = 1000;

/// Carts and orders, by visitor (customer id, else guest id).
#[derive(Default)]
pub(super) struct Shop {
    carts: HashMap<String, Vec<u32>>,
    orders: HashMap<String, Vec<Vec<u32>>>,
}

impl Shop {
    /// A guest's cart joins the customer's once they sign in.
    fn merge_guest(&mut self, seen: &Seen) {
        let (Some(customer), Some(guest)) = (
            seen.header("x-customer-id"),
            seen.header("x-previous-guest-id"),
        ) else {
            return;
        };
        if let Some(items) = self.carts.remove(guest) {
            self.carts
                .entry(customer.to_string())
                .or_default()
                .extend(items);
        }
    }

    fn cart(&self, who: Option<&str>) -> Vec<u32> {
        who.and_then(|w| self.carts.get(w))
            .cloned()
            .unwrap_or_default()
    }

    fn add(&mut self, who: &str, item: u32) {
        if self.carts.len() >= MAX_VISITORS && !self.carts.contains_key(who) {
            self.carts.clear();
        }
        self.carts.entry(who.to_string()).or_default().push(item);
    }

    fn place_order(&mut self, who: &str) -> Option<usize> {
        let items = self.carts.remove(who).filter(|i| !i.is_empty())?;
        if self.orders.len() >= MAX_VISITORS && !self.orders.contains_key(who) {
            self.orders.clear();
        }
        let orders = self.orders.entry(who.to_string()).or_default();
        orders.push(items);
        Some(orders.len())
    }
}

/// The privacy requests the gateway sends the demo store
/// (`/_demo/privacy/erase`, `/_demo/privacy/export`): what it holds of the
/// customer, exported or forgotten. A demo: it does not check the signature
/// a real system must check.
pub(super) fn privacy(shop: &Mutex<Shop>, seen: &Seen) -> Resp {
    let Ok(mut shop) = shop.lock() else {
        return respond(
            503,
            "application/json",
            r#"{"status":"error","reason":"store busy"}"#,
        );
    };
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap_or_default();
    let Some(customer) = body["customer_id"].as_str() else {
        return respond(
            400,
            "application/json",
            r#"{"status":"error","reason":"no customer_id"}"#,
        );
    };
    let holds = shop.carts.contains_key(customer) || shop.orders.contains_key(customer);
    let answer = match (seen.path.ends_with("/export"), holds) {
        (_, false) => serde_json::json!({"status": "not_found"}),
        (true, true) => {
            let names = |items: &[u32]| -> Vec<&str> {
                items
                    .iter()
                    .filter_map(|i| product(*i).map(|p| p.1))
                    .collect()
            };
            let cart = names(&shop.cart(Some(customer)));
            let orders: Vec<Vec<&str>> = shop
                .orders
                .get(customer)
                .map(|o| o.iter().map(|items| names(items)).collect())
                .unwrap_or_default();
            serde_json::json!({"status": "exported", "data": {"cart": cart, "orders": orders}})
        }
        (false, true) => {
            shop.carts.remove(customer);
            shop.orders.remove(customer);
            serde_json::json!({"status": "erased"})
        }
    };
    respond(200, "application/json", answer.to_string())
}

/// Answers one store request.
pub(super) fn handle(shop: &Mutex<Shop>, seen: &Seen) -> Resp {
    let Ok(mut shop) = shop.lock() else {
        return respond(500, "text/plain", "store unavailable");
    };
    shop.merge_guest(seen);
    let who = seen.visitor();
    let path = seen.path.as_str();
    match (seen.method.as_str(), path) {
        ("POST", "/cart/add") => {
            let item = seen
                .form("item")
                .and_then(|i| i.parse().ok())
                .filter(|i| product(*i).is_some());
            match (who, item) {
                (Some(w), Some(i)) => shop.add(w, i),
                _ => return respond(400, "text/plain", "no such product, or no visitor id"),
            }
            redirect("/cart")
        }
        ("POST", "/checkout/order") => match who.and_then(|w| shop.place_order(w)) {
            Some(n) => redirect(&format!("/account/orders?placed={n}")),
            None => redirect("/cart"),
        },
        (_, p) if p.starts_with("/cart") => {
            let items = shop.cart(who);
            page(seen, Some(items.len()), &cart_body(&items))
        }
        (_, p) if p.starts_with("/checkout") => {
            let items = shop.cart(who);
            page(seen, Some(items.len()), &checkout_body(seen, &items))
        }
        (_, p) if p.starts_with("/account") => {
            let orders = who
                .and_then(|w| shop.orders.get(w))
                .cloned()
                .unwrap_or_default();
            let n = shop.cart(who).len();
            page(seen, Some(n), &orders_body(seen, &orders))
        }
        _ => {
            let n = shop.cart(who).len();
            page(seen, Some(n), &home_body(seen))
        }
    }
}

fn page(seen: &Seen, cart: Option<usize>, content: &str) -> Resp {
    respond(
        200,
        "text/html; charset=utf-8",
        view::page("Demo Store", seen, cart, content),
    )
}

fn redirect(to: &str) -> Resp {
    let mut r = respond(303, "text/plain", "");
    if let Ok(v) = http::HeaderValue::from_str(to) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

fn product(id: u32) -> Option<(u32, &'static str, u32)> {
    PRODUCTS.iter().copied().find(|p| p.0 == id)
}

fn price(cents: u32) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}

fn home_body(seen: &Seen) -> String {
    let items: String = PRODUCTS
        .iter()
        .map(|(id, name, cents)| {
            format!(
                "<li><h3>{name}</h3><p>{}</p><form method=\"post\" action=\"/cart/add\">\
<input type=\"hidden\" name=\"item\" value=\"{id}\"><button type=\"submit\">Add to cart</button></form></li>",
                price(*cents)
            )
        })
        .collect();
    format!(
        "<h1>Demo Store</h1><p>A store behind Omnigate, showing <strong>{} {}</strong>. \
Browse as a guest, put something in the cart, then check out: you are asked to create an \
account, and your cart comes with you.</p><h2>Products</h2><ul class=\"products\">{items}</ul>",
        escape(&seen.method),
        escape(&seen.path)
    )
}

fn lines(items: &[u32]) -> (String, u32) {
    let mut total = 0;
    let rows: String = items
        .iter()
        .filter_map(|i| product(*i))
        .map(|(_, name, cents)| {
            total += cents;
            format!("<li>{name}: {}</li>", price(cents))
        })
        .collect();
    (format!("<ul>{rows}</ul>"), total)
}

fn cart_body(items: &[u32]) -> String {
    if items.is_empty() {
        return "<h1>Your cart</h1><p>Your cart is empty. <a href=\"/\">See the products</a>.</p>"
            .into();
    }
    let (list, total) = lines(items);
    format!(
        "<h1>Your cart</h1>{list}<p>Total: <strong>{}</strong></p><a class=\"button\" href=\"/checkout\">Go to checkout</a>",
        price(total)
    )
}

fn checkout_body(seen: &Seen, items: &[u32]) -> String {
    let who = seen.customer().unwrap_or("you");
    if items.is_empty() {
        return format!(
            "<h1>Checkout</h1><p>Signed in as <strong>{}</strong>. Your cart is empty: \
<a href=\"/\">see the products</a>.</p>",
            escape(who)
        );
    }
    let (list, total) = lines(items);
    format!(
        "<h1>Checkout</h1><p>Paying as <strong>{}</strong>.</p>{list}<p>Total: <strong>{}</strong></p>\
<form method=\"post\" action=\"/checkout/order\"><button type=\"submit\">Place order</button></form>",
        escape(who),
        price(total)
    )
}

fn orders_body(seen: &Seen, orders: &[Vec<u32>]) -> String {
    let placed = seen
        .query_value("placed")
        .map(|n| {
            format!(
                "<p class=\"notice\" role=\"status\">Thank you: order {} is placed.</p>",
                escape(&n)
            )
        })
        .unwrap_or_default();
    if orders.is_empty() {
        return format!("<h1>Your orders</h1>{placed}<p>No orders yet.</p>");
    }
    let list: String = orders
        .iter()
        .enumerate()
        .map(|(i, items)| {
            let (list, total) = lines(items);
            format!(
                "<li><h3>Order {}</h3>{list}<p>Total {}</p></li>",
                i + 1,
                price(total)
            )
        })
        .collect();
    format!("<h1>Your orders</h1>{placed}<ol>{list}</ol>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Seen {
        Seen {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    async fn text(r: Resp) -> serde_json::Value {
        use http_body_util::BodyExt;
        let b = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn the_store_exports_and_forgets_a_customer() {
        let shop = Mutex::new(Shop::default());
        let me = [("x-customer-id", "cus_7")];
        handle(&shop, &seen("POST", "/cart/add", &me, "item=2"));
        handle(&shop, &seen("POST", "/checkout/order", &me, ""));
        handle(&shop, &seen("POST", "/cart/add", &me, "item=1"));
        let ask = |path: &str| seen("POST", path, &[], r#"{"customer_id":"cus_7"}"#);
        let export = text(privacy(&shop, &ask("/_demo/privacy/export"))).await;
        assert_eq!(export["status"], "exported");
        assert_eq!(export["data"]["orders"].as_array().unwrap().len(), 1);
        assert_eq!(export["data"]["cart"].as_array().unwrap().len(), 1);
        let erased = text(privacy(&shop, &ask("/_demo/privacy/erase"))).await;
        assert_eq!(erased["status"], "erased");
        let again = text(privacy(&shop, &ask("/_demo/privacy/erase"))).await;
        assert_eq!(again["status"], "not_found");
        let bad = privacy(&shop, &seen("POST", "/_demo/privacy/erase", &[], "{}"));
        assert_eq!(bad.status(), 400);
    }

    #[test]
    fn a_guest_cart_follows_the_customer_and_becomes_an_order() {
        let shop = Mutex::new(Shop::default());
        let guest = [("x-guest-id", "gst_1")];
        assert_eq!(
            handle(&shop, &seen("POST", "/cart/add", &guest, "item=2")).status(),
            303
        );
        assert_eq!(
            handle(&shop, &seen("POST", "/cart/add", &guest, "item=99")).status(),
            400
        );
        let signed_in = [
            ("x-customer-id", "cus_1"),
            ("x-previous-guest-id", "gst_1"),
            ("x-customer-email", "a@x.example"),
        ];
        handle(&shop, &seen("GET", "/checkout", &signed_in, ""));
        assert_eq!(shop.lock().unwrap().cart(Some("cus_1")), vec![2]);
        let placed = handle(&shop, &seen("POST", "/checkout/order", &signed_in[..1], ""));
        assert_eq!(placed.headers()["location"], "/account/orders?placed=1");
        assert!(shop.lock().unwrap().cart(Some("cus_1")).is_empty());
        assert_eq!(shop.lock().unwrap().orders["cus_1"], vec![vec![2]]);
    }
}
