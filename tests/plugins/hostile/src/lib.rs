//! A segment that misbehaves on purpose, for the sandbox tests. It behaves (matches everyone)
//! except for customers whose id contains `victims`, where it does `mode`.

use std::cell::Cell;

use regua_sdk::prelude::*;

/// The segment.
pub struct Hostile;

/// What to do to the victims.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Behave.
    #[default]
    Behave,
    /// Loop forever.
    Loop,
    /// Allocate until something gives.
    Hog,
    /// Recurse without end.
    Recurse,
    /// Panic with a message.
    Panic,
    /// Spin for `spin` iterations, then answer (slow but within budget).
    Dawdle,
    /// Answer with a huge reason.
    Flood,
    /// Count calls in a static and report the count (state kept between calls).
    Remember,
    /// Return an error.
    Fail,
    /// Report the id of the customer this instance saw before (data crossing customers).
    Leak,
    /// Read parts it does not declare: the amount of each transaction (it declares only their
    /// `at`), then the contacts.
    Undeclared,
    /// Answer with a reason whose formatting panics: fine when the output shows no reasons
    /// (`because!` then formats nothing), a failure when it does.
    CostlyReason,
}

/// Parameters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// What to do.
    pub mode: Mode,
    /// Which customers: those whose id contains this.
    pub victims: String,
    /// Iterations for `dawdle`.
    pub spin: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mode: Mode::Behave,
            victims: "bad".into(),
            spin: 1_000_000,
        }
    }
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static LAST_ID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Recurses until the stack runs out: that is the point.
#[inline(never)]
#[allow(unconditional_recursion)]
/// A reason too costly to work out: it panics.
fn costly(id: &str) -> String {
    panic!("formatted the reason for {id}")
}

fn recurse(n: u64, sink: &mut [u64; 16]) -> u64 {
    sink[(n % 16) as usize] = n;
    let mut local = *sink;
    local[0] = recurse(std::hint::black_box(n + 1), &mut local);
    local[0] + local[1]
}

impl Segment for Hostile {
    type Params = Params;
    const READS: &'static [Field] = &[Field::Profile, Field::TransactionAt];

    fn evaluate(c: &Customer, ctx: &Context<'_, Params>) -> Result<Match> {
        let calls = CALLS.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        let previous =
            LAST_ID.with(|last| std::mem::replace(&mut *last.borrow_mut(), c.id().to_owned()));
        if !c.id().contains(&ctx.params.victims) {
            return Ok(Match::yes("behaved"));
        }
        match ctx.params.mode {
            Mode::Behave => Ok(Match::yes("behaved")),
            Mode::Loop => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Mode::Hog => {
                // Big reservations, untouched: the memory grows fast whatever the machine's load.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(8 << 20));
                    std::hint::black_box(&mut hoard);
                }
            }
            Mode::Recurse => Ok(Match::yes(recurse(0, &mut [0; 16]).to_string())),
            Mode::Panic => panic!("customer {} has no wallet", c.id()),
            Mode::Dawdle => {
                let mut x = 0u64;
                for i in 0..ctx.params.spin {
                    x = std::hint::black_box(x ^ i.wrapping_mul(31));
                }
                Ok(Match::yes(format!("dawdled {x}")))
            }
            Mode::Flood => Ok(Match::yes("x".repeat(1 << 20))),
            Mode::Remember => Ok(Match::yes(format!("call {calls}"))),
            Mode::Fail => Err(Error::new(format!("cannot judge customer {}", c.id()))),
            Mode::CostlyReason => Ok(Match::yes(because!("{}", costly(c.id())))),
            Mode::Leak => Ok(Match::yes(format!("previous customer: [{previous}]"))),
            Mode::Undeclared => {
                let spent: f64 = c.transactions().map(|t| t.amount()).sum();
                Ok(Match::yes(format!(
                    "{spent} spent, {} contacts",
                    c.contacts().len()
                )))
            }
        }
    }
}

export_segment!(Hostile);
