//! Any bytes as an NDJSON line: reading never panics, and a record that reads crosses the ABI
//! and goes back to JSON unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regua_sdk::Customer;
use regua_sdk::record::parse_customer_bytes;

fuzz_target!(|line: &[u8]| {
    let Ok(customer) = parse_customer_bytes(line) else {
        return;
    };
    let bin = postcard::to_allocvec(&customer).expect("a record always encodes");
    let back: Customer = postcard::from_bytes(&bin).expect("an encoded record always decodes");
    assert_eq!(back, customer, "the ABI changed the record");
    let json = serde_json::to_string(&customer).expect("a record always writes as JSON");
    let again = regua_sdk::record::parse_customer(&json).expect("written JSON reads back");
    assert_eq!(again, customer, "JSON round trip changed the record: {json}");
});
