//! The runtime's store on PostgreSQL (`regua serve --state postgres://…`): the same tables as
//! the embedded store, shared by any number of service replicas (docs/RUNTIME.md, "Beyond one
//! machine").
//!
//! What keeps replicas apart is the database's own:
//! - **Claims are session-level advisory locks** ([`PgLocks`]), one per customer and per input
//!   id being decided, on a connection each process keeps for them. A claim spans the read, the
//!   plugins' decision and the commit; a row lock would hold a transaction open while plugins
//!   run. An advisory lock needs no open transaction, and PostgreSQL drops it the moment the
//!   session ends: a replica killed mid-step leaves its customers free, its uncommitted step
//!   rolled back.
//! - **Each due timer fires once**: a replica fires a customer's timers only under its claim,
//!   reading them again once claimed, in the transaction that clears or moves them.
//! - **Each message enters the outbox once**: its idempotency key is unique; a commit adding
//!   messages takes a transaction-level advisory lock first, so entries become visible in the
//!   order of their `seq` (a cursor over the outbox never skips one committed late).
//! - **One replica delivers to the webhook** at a time ([`Store::lead`]), by a session lock.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use anyhow::Context as _;
use postgres::{Client, NoTls, Statement, types::ToSql};
use regua_sdk::{Record, Timestamp};

use super::shared::Locks;
use super::store::{
    Ack, Change, Entries, KeptDecision, OutboxEntry, Store, Stored, Timer, decode_bytes, encode,
    merge_import,
};

/// The schema, one migration per version, applied in order by [`Postgres::open`] and recorded
/// in `regua_schema`. A released migration is never edited: a change is a new one.
const MIGRATIONS: &[&str] = &["
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    record BYTEA NOT NULL,
    clock BIGINT,
    tz TEXT
);
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE TABLE timers (
    customer TEXT NOT NULL,
    campaign TEXT NOT NULL,
    due BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (customer, campaign)
);
CREATE INDEX timers_due ON timers (due, customer, campaign);
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    customer TEXT NOT NULL,
    campaign TEXT NOT NULL,
    variant TEXT,
    channel TEXT NOT NULL,
    template TEXT NOT NULL,
    category TEXT NOT NULL,
    tags TEXT NOT NULL,
    send_at BIGINT NOT NULL,
    journey TEXT,
    instance INTEGER,
    step TEXT,
    decided_at BIGINT NOT NULL,
    input TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    detail TEXT,
    updated_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (state, send_at);
CREATE INDEX outbox_customer ON outbox (customer, seq);
CREATE TABLE decisions (
    seq BIGSERIAL PRIMARY KEY,
    customer TEXT NOT NULL,
    at BIGINT NOT NULL,
    input TEXT NOT NULL,
    campaign TEXT NOT NULL,
    decision TEXT NOT NULL
);
CREATE INDEX decisions_customer ON decisions (customer, seq);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"];

/// Advisory lock keys of the runtime's own (a claim's key is a hash of its text, which never
/// starts with `regua:`).
fn lock_key(text: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as i64
}

/// Whether `state` (the `--state` argument) names a PostgreSQL database.
pub fn is_url(state: &str) -> bool {
    state.starts_with("postgres://") || state.starts_with("postgresql://")
}

/// `url` without its password, for messages.
fn shown(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => format!(
            "{}{}{}/{}",
            c.get_user().map(|u| format!("{u}@")).unwrap_or_default(),
            c.get_hosts()
                .first()
                .map(|h| match h {
                    postgres::config::Host::Tcp(h) => h.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default(),
            c.get_ports()
                .first()
                .map(|p| format!(":{p}"))
                .unwrap_or_default(),
            c.get_dbname().unwrap_or("")
        ),
        Err(_) => "the database".into(),
    }
}

fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config: postgres::Config = url.parse().map_err(|e| {
        anyhow::anyhow!(
            "--state: not a PostgreSQL URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE): {e}"
        )
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    // A replica whose machine vanished (no FIN, no RST) is found dead by TCP keepalives; its
    // claims go when the server drops the connection (docs/RUNTIME.md gives the bound).
    config.keepalives(true);
    config.keepalives_idle(std::time::Duration::from_secs(10));
    config.application_name("regua");
    config
        .connect(NoTls)
        .with_context(|| format!("cannot connect to PostgreSQL at {}", shown(url)))
}

/// The PostgreSQL store: one connection (for writes, or for reads only: [`Store::reader`]).
pub struct Postgres {
    url: String,
    client: Client,
    statements: HashMap<&'static str, Statement>,
    in_batch: bool,
    reader: bool,
    /// The roles this connection's session leads ([`Store::lead`]).
    leading: HashSet<String>,
    /// Whether this batch took the outbox's order lock already.
    ordered: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("db", &shown(&self.url))
            .finish()
    }
}

impl Postgres {
    /// Connects to the database at `url`, creating the runtime's tables or migrating them to
    /// this version's (one process at a time: the others wait).
    pub fn open(url: &str) -> anyhow::Result<Postgres> {
        let mut client = connect(url)?;
        migrate(&mut client).with_context(|| format!("cannot set up the store {}", shown(url)))?;
        Ok(Postgres::on(url, client, false))
    }

    fn on(url: &str, client: Client, reader: bool) -> Postgres {
        Postgres {
            url: url.to_owned(),
            client,
            statements: HashMap::new(),
            in_batch: false,
            reader,
            leading: HashSet::new(),
            ordered: false,
        }
    }

    /// The prepared statement for `sql`, prepared once per connection.
    fn stmt(&mut self, sql: &'static str) -> anyhow::Result<Statement> {
        if self.client.is_closed() && !self.in_batch {
            // The server restarted or dropped the connection: a new one, with what it had.
            tracing::warn!("PostgreSQL connection lost; reconnecting");
            self.client = connect(&self.url)?;
            self.statements.clear();
            self.leading.clear();
        }
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<u64> {
        let s = self.stmt(sql)?;
        Ok(self.client.execute(&s, params)?)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.client.query(&s, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Option<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.client.query_opt(&s, params)?)
    }

    /// Runs `f` in one transaction (or in the one already open), committed if it succeeds.
    fn transaction(
        &mut self,
        f: &mut dyn FnMut(&mut Postgres) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.in_batch {
            return f(self);
        }
        // A reader's reads in one batch see one snapshot.
        let begin = if self.reader {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        } else {
            "BEGIN"
        };
        self.execute(begin, &[])?;
        self.in_batch = true;
        self.ordered = false;
        let result = f(self);
        self.in_batch = false;
        match result {
            Ok(()) => {
                self.execute("COMMIT", &[])?;
                Ok(())
            }
            Err(e) => {
                // A connection gone has rolled back already.
                let _ = self.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    fn write(&mut self, change: &Change) -> anyhow::Result<()> {
        let id = change.customer.as_str();
        let at = change.at.as_millis();
        if let Some(record) = &change.record {
            self.execute(
                "INSERT INTO customers (id, record, clock, tz) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record, clock = excluded.clock,
                    tz = excluded.tz",
                &[&id, &encode(record), &at, &record.tz],
            )?;
        }
        if let Some(e) = &change.event_id {
            self.execute(
                "INSERT INTO events (id, customer, at) VALUES ($1, $2, $3)",
                &[e, &id, &at],
            )?;
        }
        for (campaign, timer) in &change.timers {
            self.set_timer(id, campaign, *timer)?;
        }
        if !change.outbox.is_empty() && !self.ordered {
            // Entries get their `seq` in commit order: a cursor over the outbox read while
            // another replica's commit is in flight never skips an entry committed later with
            // a smaller `seq`. Held to this transaction's end.
            self.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[&lock_key("regua:outbox-order")],
            )?;
            self.ordered = true;
        }
        for m in &change.outbox {
            let tags = serde_json::to_string(&m.tags).expect("tags are JSON");
            let instance = m.instance.map(|i| i as i32);
            self.execute(
                "INSERT INTO outbox (key, customer, campaign, variant, channel, template,
                    category, tags, send_at, journey, instance, step, decided_at, input)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (key) DO NOTHING",
                &[
                    &m.key,
                    &m.customer,
                    &m.campaign,
                    &m.variant,
                    &m.channel,
                    &m.template,
                    &m.category,
                    &tags,
                    &m.send_at.as_millis(),
                    &m.journey,
                    &instance,
                    &m.step,
                    &m.decided_at.as_millis(),
                    &m.input,
                ],
            )?;
        }
        for (campaign, d) in &change.decisions {
            self.execute(
                "INSERT INTO decisions (customer, at, input, campaign, decision)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id, &at, &change.input, campaign, d],
            )?;
        }
        Ok(())
    }

    /// Sets (`Some`: due instant and failed attempts) or clears a customer's timer.
    fn set_timer(
        &mut self,
        customer: &str,
        campaign: &str,
        timer: Option<(Timestamp, u32)>,
    ) -> anyhow::Result<()> {
        match timer {
            Some((due, attempts)) => self.execute(
                // Most steps set a timer as it was: then nothing is written.
                "INSERT INTO timers (customer, campaign, due, attempts) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (customer, campaign) DO UPDATE
                 SET due = excluded.due, attempts = excluded.attempts
                 WHERE (timers.due, timers.attempts) IS DISTINCT FROM
                       (excluded.due, excluded.attempts)",
                &[&customer, &campaign, &due.as_millis(), &(attempts as i32)],
            )?,
            None => self.execute(
                "DELETE FROM timers WHERE customer = $1 AND campaign = $2",
                &[&customer, &campaign],
            )?,
        };
        Ok(())
    }
}

fn timer(row: &postgres::Row) -> Timer {
    Timer {
        customer: row.get(0),
        campaign: row.get(1),
        due: Timestamp::from_millis(row.get(2)),
        attempts: row.get::<_, i32>(3) as u32,
    }
}

fn entry(row: &postgres::Row) -> OutboxEntry {
    let tags: String = row.get(8);
    OutboxEntry {
        seq: row.get(0),
        key: row.get(1),
        customer: row.get(2),
        campaign: row.get(3),
        variant: row.get(4),
        channel: row.get(5),
        template: row.get(6),
        category: row.get(7),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        send_at: Timestamp::from_millis(row.get(9)),
        journey: row.get(10),
        instance: row.get::<_, Option<i32>>(11).map(|i| i as u32),
        step: row.get(12),
        decided_at: Timestamp::from_millis(row.get(13)),
        input: row.get(14),
        state: row.get(15),
        detail: row.get(16),
        attempts: row.get::<_, i32>(17) as u32,
    }
}

/// Creates or migrates the tables, under an advisory lock so replicas starting together
/// migrate once.
fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let key = lock_key("regua:migrate");
    client.execute("SELECT pg_advisory_lock($1)", &[&key])?;
    let result = (|| -> anyhow::Result<()> {
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS regua_schema (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        let at: i32 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM regua_schema", &[])?
            .get(0);
        if at as usize > MIGRATIONS.len() {
            anyhow::bail!(
                "the database's schema is at version {at}, newer than this version of regua \
                 knows ({}): a newer regua migrated it",
                MIGRATIONS.len()
            );
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(at as usize) {
            let version = n as i32 + 1;
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)
                .with_context(|| format!("migration {version}"))?;
            tx.execute(
                "INSERT INTO regua_schema (version) VALUES ($1)",
                &[&version],
            )?;
            tx.commit()?;
            tracing::info!(version, "store schema migrated");
        }
        Ok(())
    })();
    client.execute("SELECT pg_advisory_unlock($1)", &[&key])?;
    result
}

impl Store for Postgres {
    fn reader(&self) -> anyhow::Result<Option<Box<dyn Store>>> {
        Ok(Some(Box::new(Postgres::on(
            &self.url,
            connect(&self.url)?,
            true,
        ))))
    }

    fn locks(&self) -> anyhow::Result<Option<Box<dyn Locks>>> {
        Ok(Some(Box::new(PgLocks {
            client: Mutex::new(connect(&self.url)?),
            url: shown(&self.url),
        })))
    }

    fn lead(&mut self, role: &str) -> anyhow::Result<bool> {
        // Held by this connection's session until it closes. A round trip first, so a
        // connection that died since is found now (it fails this call; the next one
        // reconnects, forgetting what the old session held) rather than trusted.
        self.execute("SELECT 1", &[])?;
        if self.leading.contains(role) {
            return Ok(true);
        }
        let key = lock_key(&format!("regua:lead:{role}"));
        let stmt = self.stmt("SELECT pg_try_advisory_lock($1)")?;
        let got: bool = self.client.query_one(&stmt, &[&key])?.get(0);
        if got {
            self.leading.insert(role.to_owned());
        }
        Ok(got)
    }

    fn customer(&mut self, id: &str) -> anyhow::Result<Option<Stored>> {
        let Some(row) =
            self.query_opt("SELECT record, clock FROM customers WHERE id = $1", &[&id])?
        else {
            return Ok(None);
        };
        Ok(Some(Stored {
            record: decode_bytes(id, row.get::<_, &[u8]>(0))?,
            clock: row.get::<_, Option<i64>>(1).map(Timestamp::from_millis),
        }))
    }

    fn event_seen(&mut self, id: &str) -> anyhow::Result<bool> {
        Ok(self
            .query_opt("SELECT 1 FROM events WHERE id = $1", &[&id])?
            .is_some())
    }

    fn forget_events(&mut self, before: Timestamp, limit: usize) -> anyhow::Result<u64> {
        self.execute(
            // An id at its customer's clock stays: a repeat of it would not be late.
            "DELETE FROM events WHERE id IN
             (SELECT e.id FROM events e JOIN customers c ON c.id = e.customer
              WHERE e.at < $1 AND e.at < c.clock ORDER BY e.at LIMIT $2)",
            &[&before.as_millis(), &(limit as i64)],
        )
    }

    fn commit(&mut self, change: &Change) -> anyhow::Result<()> {
        if self.in_batch {
            return self.write(change);
        }
        self.batch(&mut |store| store.commit(change))
    }

    fn batch(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.transaction(&mut |store| f(store))
    }

    fn import(&mut self, records: &[Record]) -> anyhow::Result<()> {
        self.transaction(&mut |store| {
            for r in records {
                let merged = match store.query_opt(
                    "SELECT record FROM customers WHERE id = $1 FOR UPDATE",
                    &[&r.id],
                )? {
                    Some(row) => {
                        merge_import(decode_bytes(&r.id, row.get::<_, &[u8]>(0))?, r.clone())
                    }
                    None => r.clone(),
                };
                store.execute(
                    "INSERT INTO customers (id, record, tz) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record, tz = excluded.tz",
                    &[&r.id, &encode(&merged), &merged.tz],
                )?;
            }
            Ok(())
        })
    }

    fn due(&mut self, until: Timestamp, limit: usize) -> anyhow::Result<Vec<Timer>> {
        Ok(self
            .query(
                "SELECT customer, campaign, due, attempts FROM timers WHERE due <= $1
                 ORDER BY due, customer, campaign LIMIT $2",
                &[&until.as_millis(), &(limit as i64)],
            )?
            .iter()
            .map(timer)
            .collect())
    }

    fn due_for(&mut self, customer: &str, until: Timestamp) -> anyhow::Result<Option<Timer>> {
        Ok(self
            .query_opt(
                "SELECT customer, campaign, due, attempts FROM timers
                 WHERE customer = $1 AND due <= $2 ORDER BY due, campaign LIMIT 1",
                &[&customer, &until.as_millis()],
            )?
            .as_ref()
            .map(timer))
    }

    fn next_due(&mut self) -> anyhow::Result<Option<Timestamp>> {
        let row = self.query_opt("SELECT MIN(due) FROM timers", &[])?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(Timestamp::from_millis))
    }

    fn outbox(
        &mut self,
        which: Entries<'_>,
        after: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxEntry>> {
        let limit = limit as i64;
        let rows = match which {
            Entries::Due(due) => self.query(
                "SELECT seq, key, customer, campaign, variant, channel, template, category,
                        tags, send_at, journey, instance, step, decided_at, input, state, detail,
                        attempts
                 FROM outbox WHERE state = 'pending' AND send_at <= $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&due.as_millis(), &after, &limit],
            )?,
            Entries::Deliverable(now) => self.query(
                "SELECT seq, key, customer, campaign, variant, channel, template, category,
                        tags, send_at, journey, instance, step, decided_at, input, state, detail,
                        attempts
                 FROM outbox WHERE state = 'pending' AND send_at <= $1 AND seq > $2
                   AND (retry_at IS NULL OR retry_at <= $1)
                 ORDER BY seq LIMIT $3",
                &[&now.as_millis(), &after, &limit],
            )?,
            Entries::Of(customer) => self.query(
                "SELECT seq, key, customer, campaign, variant, channel, template, category,
                        tags, send_at, journey, instance, step, decided_at, input, state, detail,
                        attempts
                 FROM outbox WHERE customer = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&customer, &after, &limit],
            )?,
            Entries::All => self.query(
                "SELECT seq, key, customer, campaign, variant, channel, template, category,
                        tags, send_at, journey, instance, step, decided_at, input, state, detail,
                        attempts
                 FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )?,
        };
        Ok(rows.iter().map(entry).collect())
    }

    fn ack(&mut self, acks: &[Ack], at: Timestamp) -> anyhow::Result<Vec<bool>> {
        let mut found = Vec::with_capacity(acks.len());
        self.transaction(&mut |store| {
            for a in acks {
                let n = store.execute(
                    "UPDATE outbox SET state = $2, detail = $3, updated_at = $4 WHERE key = $1",
                    &[&a.key, &a.state.as_str(), &a.detail, &at.as_millis()],
                )?;
                found.push(n > 0);
            }
            Ok(())
        })?;
        Ok(found)
    }

    fn retry(&mut self, key: &str, retry_at: Timestamp, detail: &str) -> anyhow::Result<()> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, retry_at = $2, detail = $3
             WHERE key = $1 AND state = 'pending'",
            &[&key, &retry_at.as_millis(), &detail],
        )?;
        Ok(())
    }

    fn timers_of(&mut self, customer: &str) -> anyhow::Result<Vec<Timer>> {
        Ok(self
            .query(
                "SELECT customer, campaign, due, attempts FROM timers WHERE customer = $1
                 ORDER BY due, campaign",
                &[&customer],
            )?
            .iter()
            .map(timer)
            .collect())
    }

    fn decisions_of(&mut self, customer: &str, limit: usize) -> anyhow::Result<Vec<KeptDecision>> {
        Ok(self
            .query(
                "SELECT at, input, decision FROM decisions WHERE customer = $1
                 ORDER BY seq DESC LIMIT $2",
                &[&customer, &(limit as i64)],
            )?
            .iter()
            .map(|r| KeptDecision {
                at: Timestamp::from_millis(r.get(0)),
                input: r.get(1),
                decision: serde_json::from_str(r.get(2)).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    fn counts(&mut self) -> anyhow::Result<(u64, u64, u64)> {
        let row = self
            .query(
                "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM timers),
                        (SELECT COUNT(*) FROM outbox)",
                &[],
            )?
            .pop()
            .expect("one row");
        Ok((
            row.get::<_, i64>(0) as u64,
            row.get::<_, i64>(1) as u64,
            row.get::<_, i64>(2) as u64,
        ))
    }

    fn customers_page(
        &mut self,
        after: &str,
        limit: usize,
        without_timer_of: Option<&str>,
    ) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let rows = match without_timer_of {
            Some(campaign) => self.query(
                "SELECT id, tz FROM customers c WHERE id > $1
                 AND NOT EXISTS (SELECT 1 FROM timers t
                                 WHERE t.customer = c.id AND t.campaign = $3)
                 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64), &campaign],
            )?,
            None => self.query(
                "SELECT id, tz FROM customers WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &(limit as i64)],
            )?,
        };
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn set_timers(
        &mut self,
        campaign: &str,
        timers: &[(String, Option<Timestamp>)],
    ) -> anyhow::Result<()> {
        for (customer, due) in timers {
            self.set_timer(customer, campaign, due.map(|d| (d, 0)))?;
        }
        Ok(())
    }

    fn meta(&mut self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }
}

/// The claims of one process on the shared database: session advisory locks on a connection
/// of their own ([`Locks`]).
pub struct PgLocks {
    client: Mutex<Client>,
    url: String,
}

impl PgLocks {
    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims connection failed: the claims it held may be gone (the session with them), so
    /// another replica may now decide this one's customers. Deciding on could apply an input
    /// twice; the process stops instead, and its supervisor starts it again (crash-only).
    fn lost(&self, e: postgres::Error) -> ! {
        tracing::error!(
            "the connection holding this replica's claims on {} failed ({e}): stopping, as \
             its claims may be another's now",
            self.url
        );
        eprintln!(
            "regua: the connection holding this replica's claims on {} failed ({e}): \
             stopping, as its claims may be another's now",
            self.url
        );
        std::process::exit(70)
    }
}

impl Locks for PgLocks {
    fn try_lock(&self, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let ids: Vec<i64> = keys.iter().map(|k| lock_key(k)).collect();
        let mut client = self.client();
        // All or none: the ones taken are given back if any is another's.
        let taken: Vec<i64> = match client.query(
            "SELECT k FROM unnest($1::int8[]) AS k WHERE pg_try_advisory_lock(k)",
            &[&ids],
        ) {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => self.lost(e),
        };
        if taken.len() == ids.len() {
            return true;
        }
        if let Err(e) = client.execute(
            "SELECT pg_advisory_unlock(k) FROM unnest($1::int8[]) AS k",
            &[&taken],
        ) {
            self.lost(e)
        }
        false
    }

    fn unlock(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let ids: Vec<i64> = keys.iter().map(|k| lock_key(k)).collect();
        if let Err(e) = self.client().execute(
            "SELECT pg_advisory_unlock(k) FROM unnest($1::int8[]) AS k",
            &[&ids],
        ) {
            self.lost(e)
        }
    }

    fn try_lock_all(&self) -> bool {
        match self.client().query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&lock_key("regua:every-customer")],
        ) {
            Ok(row) => row.get(0),
            Err(e) => self.lost(e),
        }
    }

    fn unlock_all(&self) {
        if let Err(e) = self.client().execute(
            "SELECT pg_advisory_unlock($1)",
            &[&lock_key("regua:every-customer")],
        ) {
            self.lost(e)
        }
    }
}
