//! Deterministic, sticky A/B assignment: bucket = first 8 bytes, big-endian, of
//! SHA-256(`"<journey or campaign>:<customer id>"`) mod 10000; variants own ranges of buckets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Number of buckets.
pub const BUCKETS: u16 = 10_000;

/// The customer's bucket (0–9999) for `key`, a journey or campaign name.
pub fn bucket(key: &str, customer_id: &str) -> u16 {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(b":");
    h.update(customer_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u16
}

/// A variant and the half-open bucket range `[from, to)` it owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's name (`A`, `B`, `control`, …).
    pub name: String,
    /// `[from, to)`, within 0–10000.
    pub buckets: [u16; 2],
    /// A control variant never receives the message.
    #[serde(default)]
    pub control: bool,
}

impl Variant {
    /// Whether `bucket` falls in this variant's range.
    pub fn owns(&self, bucket: u16) -> bool {
        self.buckets[0] <= bucket && bucket < self.buckets[1]
    }
}

/// The variant owning the customer's bucket for `key`, if any.
pub fn assign<'a>(variants: &'a [Variant], key: &str, customer_id: &str) -> Option<&'a Variant> {
    let b = bucket(key, customer_id);
    variants.iter().find(|v| v.owns(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_follows_the_published_formula() {
        // SHA-256("welcome:c-1") starts 0x…; recomputed here independently of `bucket`.
        let digest = Sha256::digest(b"welcome:c-1");
        let n = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(u64::from(bucket("welcome", "c-1")), n % 10_000);
        assert_eq!(bucket("welcome", "c-1"), bucket("welcome", "c-1"));
        assert_ne!(bucket("welcome", "c-1"), bucket("welcome", "c-2"));
    }

    #[test]
    fn buckets_spread_evenly() {
        let in_control = (0..10_000)
            .filter(|i| bucket("holdout", &format!("c-{i}")) >= 9500)
            .count();
        assert!((400..600).contains(&in_control), "{in_control}");
    }
}
