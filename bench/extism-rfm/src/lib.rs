//! The RFM Champions rule as an Extism plugin: the same lazy parsing and rule as the native
//! program of the benchmark, one record per call.

use std::borrow::Cow;
use std::sync::OnceLock;

use extism_pdk::*;
use regua_sdk::Timestamp;
use serde::Deserialize;

#[derive(Deserialize)]
struct LazyCustomer<'a> {
    #[serde(default, borrow)]
    transactions: Vec<LazyTransaction<'a>>,
}

#[derive(Deserialize)]
struct LazyTransaction<'a> {
    at: Timestamp,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    amount: f64,
}

static NOW: OnceLock<Timestamp> = OnceLock::new();

#[plugin_fn]
pub fn evaluate(input: Vec<u8>) -> FnResult<Vec<u8>> {
    let now = match NOW.get() {
        Some(now) => *now,
        None => {
            let text = config::get("now")?.unwrap_or_default();
            *NOW.get_or_init(|| Timestamp::parse(&text).expect("config `now`"))
        }
    };
    let c: LazyCustomer = serde_json::from_slice(&input)?;
    let (mut n, mut sum, mut last) = (0u32, 0.0, None::<Timestamp>);
    for t in c.transactions.iter().filter(|t| t.kind == "purchase" && t.at <= now) {
        n += 1;
        sum += t.amount;
        last = Some(last.map_or(t.at, |l| l.max(t.at)));
    }
    let champion =
        n >= 10 && sum >= 5000.0 && last.is_some_and(|l| (now - l).whole_days() < 30);
    Ok(if champion { b"1".to_vec() } else { b"0".to_vec() })
}
