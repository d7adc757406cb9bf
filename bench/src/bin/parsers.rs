//! serde_json against sonic-rs on our generated records, reading the same serde structs: the
//! borrowed structs of the benchmark's limit (only what RFM reads) and Régua's whole `Record`.
//! Prints each reader's best of five passes and the ratio, so the limit and the host can use the
//! faster one.
//!
//! ```sh
//! target/release/regua generate -n 20000 --seed 42 -o /tmp/c20k.ndjson
//! cargo run --release --manifest-path bench/Cargo.toml --bin parsers -- /tmp/c20k.ndjson
//! ```

use std::time::{Duration, Instant};

use regua_sdk::Record;

#[path = "../lazy.rs"]
mod lazy;
use lazy::LazyCustomer as Lazy;

fn best(mut pass: impl FnMut() -> usize) -> (Duration, usize) {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            let n = pass();
            (started.elapsed(), n)
        })
        .min()
        .expect("five passes")
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: parsers FILE.ndjson"))?;
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let lazy = |l: &Lazy| {
        l.id.len()
            + l.transactions
                .iter()
                .filter(|t| t.kind == "purchase")
                .count()
            + l.transactions
                .iter()
                .map(|t| (t.amount as usize) ^ (t.at.as_millis() as usize))
                .sum::<usize>()
    };
    let rows: [(&str, Box<dyn Fn(&str) -> usize>, Box<dyn Fn(&str) -> usize>); 2] = [
        (
            "borrowed structs (the limit)",
            Box::new(|l| lazy(&serde_json::from_str(l).unwrap())),
            Box::new(|l| lazy(&sonic_rs::from_str(l).unwrap())),
        ),
        (
            "Régua's Record, whole",
            Box::new(|l| {
                serde_json::from_str::<Record>(l)
                    .unwrap()
                    .transactions
                    .len()
            }),
            Box::new(|l| sonic_rs::from_str::<Record>(l).unwrap().transactions.len()),
        ),
    ];
    println!("{} records, {} MB", lines.len(), text.len() >> 20);
    println!("| struct | serde_json records/s | sonic-rs records/s | sonic-rs ÷ serde_json |");
    println!("|---|---:|---:|---:|");
    for (what, serde, sonic) in rows {
        let (a, n) = best(|| lines.iter().map(|l| serde(l)).sum());
        let (b, m) = best(|| lines.iter().map(|l| sonic(l)).sum());
        anyhow::ensure!(n == m, "{what}: the two readers read different values");
        let rate = |d: Duration| lines.len() as f64 / d.as_secs_f64();
        println!(
            "| {what} | {:.0} | {:.0} | {:.2} |",
            rate(a),
            rate(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    Ok(())
}
