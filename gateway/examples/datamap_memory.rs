//! What the data map's in-memory aggregate costs: fills it with N distinct
//! customer × upstream pairs shaped as the proxy records them (customer ids
//! as the directory issues them, three upstreams, a consents value) and
//! prints the heap it holds per pair — estimated by the aggregate itself
//! and measured as the process's resident growth — and that the bound holds.
//! Run by `bench/datamap`.

use omnigate::privacy::datamap::{Recorder, FIELD_EMAIL, FIELD_ID};

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let customers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let systems = ["store", "crm", "api"];
    let pairs = customers * systems.len();
    let ids: Vec<String> = (0..customers)
        .map(|i| {
            format!(
                "cus_{:032x}",
                (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
        })
        .collect();
    let recorder = Recorder::new(pairs);
    let before = resident_bytes();
    for (i, id) in ids.iter().enumerate() {
        for s in systems {
            let fields = FIELD_ID | if i % 2 == 0 { FIELD_EMAIL } else { 0 };
            recorder.record(id, s, fields, "marketing_email=1,terms=1", 1_800_000_000);
        }
    }
    let after = resident_bytes();
    // Past the bound: a new pair is counted as dropped, never kept.
    recorder.record("cus_over_the_bound", "store", FIELD_ID, "", 1_800_000_001);
    let est = recorder.approx_bytes();
    println!(
        "pairs held: {} (bound {pairs}), dropped past the bound: {}",
        recorder.pairs(),
        recorder.dropped()
    );
    println!(
        "estimated heap: {est} bytes = {:.0} bytes per pair",
        est as f64 / pairs as f64
    );
    println!(
        "resident growth: {} bytes = {:.0} bytes per pair",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / pairs as f64
    );
    let taken = recorder.take();
    println!(
        "one flush takes {} rows and leaves {} pairs",
        taken.len(),
        recorder.pairs()
    );
}
