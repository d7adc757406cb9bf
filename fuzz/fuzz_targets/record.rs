//! Any bytes as an NDJSON line: reading never panics, a record that reads crosses the ABI and
//! goes back to JSON unchanged, and reading only some parts (as a batch does for its plugins)
//! gives the same record with the other parts empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regua_sdk::record::{parse_customer_bytes, parse_customer_reading};
use regua_sdk::{Field, Fields, Record};

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
    let kept = kept_to(&customer, fields);
    assert_eq!(projected.as_ref(), Ok(&kept), "reading {reads:?} differs");
    let mut bin = Vec::new();
    regua_sdk::wire::encode_customer_reading(&kept, fields.parts(), &mut bin);
    assert_eq!(read_back(&bin), kept, "the ABI changed the record read for {reads:?}");
    let mut bin = Vec::new();
    regua_sdk::wire::encode_customer(&customer, &mut bin);
    assert_eq!(read_back(&bin), customer, "the ABI changed the record");
    let json = serde_json::to_string(&customer).expect("a record always writes as JSON");
    let again = regua_sdk::record::parse_customer(&json).expect("written JSON reads back");
    assert_eq!(
        again, customer,
        "JSON round trip changed the record: {json}"
    );
});

/// The record a plugin reads from `bin`, the whole of it.
fn read_back(bin: &[u8]) -> Record {
    let view = regua_sdk::wire::RecordView::read(bin).expect("an encoded record reads");
    view.to_record().expect("an encoded record reads")
}

/// The record as a reader of `fields` should give it, worked out independently of the reader:
/// parts not read empty, members not read empty.
fn kept_to(c: &Record, fields: Fields) -> Record {
    let part = |f| fields.contains(f);
    let member = |f| fields.reads(f);
    let mut k = Record {
        id: c.id.clone(),
        tz: c.tz.clone(),
        ..Record::default()
    };
    if part(Field::Profile) {
        k.profile = c.profile.clone();
    }
    if part(Field::Consents) {
        k.consents = c.consents.clone();
    }
    if part(Field::Inbound) {
        k.inbound = c.inbound.clone();
    }
    if part(Field::Contacts) {
        k.contacts = c.contacts.clone();
    }
    if part(Field::Journeys) {
        k.journeys = c.journeys.clone();
    }
    if part(Field::Transactions) {
        k.transactions = c
            .transactions
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if !member(Field::TransactionId) {
                    t.id.clear();
                }
                if !member(Field::TransactionAt) {
                    t.at = Default::default();
                }
                if !member(Field::TransactionKind) {
                    t.kind.clear();
                }
                if !member(Field::TransactionAmount) {
                    t.amount = 0.0;
                }
                if !member(Field::TransactionCurrency) {
                    t.currency.clear();
                }
                if !member(Field::TransactionBusinessUnit) {
                    t.business_unit = None;
                }
                if !member(Field::TransactionCategory) {
                    t.category = None;
                }
                t
            })
            .collect();
    }
    if part(Field::Events) {
        k.events = c
            .events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if !member(Field::EventName) {
                    e.name.clear();
                }
                if !member(Field::EventAt) {
                    e.at = Default::default();
                }
                if !member(Field::EventProps) {
                    e.props = regua_sdk::Value::Null;
                }
                e
            })
            .collect();
    }
    k
}
