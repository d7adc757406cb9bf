//! Any bytes as an NDJSON line: reading never panics, a record that reads crosses the ABI and
//! goes back to JSON unchanged, and reading only some parts (as a batch does for its plugins)
//! gives the same record with the other parts empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regua_sdk::record::{parse_customer_bytes, parse_customer_reading};
use regua_sdk::{Customer, Field, Fields};

fuzz_target!(|input: &[u8]| {
    // The first two bytes pick the parts and members a batch's plugins read (all but the
    // last member fit); the rest is the line.
    let [a, b, line @ ..] = input else {
        return;
    };
    let pick = u32::from(u16::from_le_bytes([*a, *b]));
    let reads: Vec<Field> = [Field::ALL, Field::MEMBERS]
        .concat()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| pick & 1 << i != 0)
        .map(|(_, f)| f)
        .collect();
    let fields = Fields::of(&reads);
    let projected = parse_customer_reading(line, fields);
    let Ok(customer) = parse_customer_bytes(line) else {
        return;
    };
    // A record valid whole is valid for any parts, and reads as the whole kept to them.
    let mut kept = customer.clone();
    kept.keep_only(fields);
    assert_eq!(projected.as_ref(), Ok(&kept), "reading {reads:?} differs");
    let mut bin = Vec::new();
    regua_sdk::wire::encode_customer_reading(&kept, fields.parts(), &mut bin);
    let back: Customer = postcard::from_bytes(&bin).expect("an encoded record always decodes");
    assert_eq!(back, kept, "the ABI changed the record read for {reads:?}");
    let bin = postcard::to_allocvec(&customer).expect("a record always encodes");
    let back: Customer = postcard::from_bytes(&bin).expect("an encoded record always decodes");
    assert_eq!(back, customer, "the ABI changed the record");
    let json = serde_json::to_string(&customer).expect("a record always writes as JSON");
    let again = regua_sdk::record::parse_customer(&json).expect("written JSON reads back");
    assert_eq!(again, customer, "JSON round trip changed the record: {json}");
});
