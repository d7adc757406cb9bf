//! How the core reaches the store: [`Access`]. The service's threads share one store
//! ([`Shared`]): each commit locks it briefly, reads go through connections of their own
//! (at the same time as a commit), the plugins decide with it unlocked, and a customer (or an
//! input id) being decided is claimed, so no two threads decide the same customer at once and
//! a customer's inputs still go one at a time. `regua
//! replay` and the tests use the store alone ([`Alone`]).

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Store;

/// The store as the core uses it.
pub trait Access {
    /// Runs `f` on the store, alone: hold it only for reads and commits, never while plugins
    /// decide.
    fn with(&self, f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>) -> anyhow::Result<()>;

    /// Runs `f` on the store for reads only, at the same time as other threads' reads and
    /// commits where the store allows it: what `f` reads of the customers and ids the caller
    /// claimed is what their last commit left.
    fn reading(
        &self,
        f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.with(f)
    }

    /// Claims `keys` for the caller's steps, waiting while another thread holds any of them.
    /// The caller holds no claim when it waits (so two threads never wait on each other).
    fn claim(&self, keys: &[String]);

    /// Claims every one of `keys` if no other thread holds any of them (and then answers
    /// `true`), or none.
    fn try_claim(&self, keys: &[String]) -> bool;

    /// Claims every one of `keys`, waiting for them while the caller holds other claims, if
    /// no other thread (of any process sharing the store) is waiting so; answers whether it
    /// did (else it claimed none, at once). One such waiter at a time means no two threads
    /// ever wait on each other: every other thread waits holding nothing, or does not wait.
    fn claim_holding(&self, keys: &[String]) -> bool {
        self.try_claim(keys)
    }

    /// Releases claims.
    fn release(&self, keys: &[String]);
}

impl dyn Access + '_ {
    /// [`Access::reading`], answering what `f` answers.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        let mut f = Some(f);
        let mut out = None;
        self.reading(&mut |store| {
            let f = f.take().expect("`reading` runs its function once");
            out = Some(f(store)?);
            Ok(())
        })?;
        Ok(out.expect("`reading` ran its function"))
    }
}

/// The claim key of a customer.
pub fn customer_key(id: &str) -> String {
    format!("c:{id}")
}

/// The claim key of an input id.
pub fn input_key(id: &str) -> String {
    format!("i:{id}")
}

/// The claims one thread's steps hold, released when they are committed, or when this goes
/// (a step failed).
pub struct Claimed<'a> {
    access: &'a dyn Access,
    /// A set: a wave of 256 inputs asks about 512 keys per input.
    keys: HashSet<String>,
}

impl<'a> Claimed<'a> {
    /// None yet.
    pub fn new(access: &'a dyn Access) -> Claimed<'a> {
        Claimed {
            access,
            keys: HashSet::new(),
        }
    }

    /// Whether these claims include `key`.
    pub fn holds(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Those of `keys` these claims do not include.
    pub fn lacking(&self, keys: &[String]) -> Vec<String> {
        keys.iter().filter(|k| !self.holds(k)).cloned().collect()
    }

    /// Adds `keys`, if no other thread holds any of them; answers whether it did.
    pub fn try_add(&mut self, keys: &[String]) -> bool {
        let ok = self.access.try_claim(keys);
        if ok {
            self.keys.extend(keys.iter().cloned());
        }
        ok
    }

    /// Adds `keys`, waiting for them; these claims must be empty (a thread waits holding
    /// nothing, so two never wait on each other).
    pub fn add_waiting(&mut self, keys: &[String]) {
        debug_assert!(
            self.keys.is_empty(),
            "waiting for claims while holding some"
        );
        self.access.claim(keys);
        self.keys.extend(keys.iter().cloned());
    }

    /// Adds `keys`, waiting for them holding these claims, if no other thread waits so
    /// ([`Access::claim_holding`]); answers whether it did.
    pub fn add_holding(&mut self, keys: &[String]) -> bool {
        let ok = self.access.claim_holding(keys);
        if ok {
            self.keys.extend(keys.iter().cloned());
        }
        ok
    }

    /// Releases them all but those `keep` answers `true` for.
    pub fn release_but(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.keys.iter().filter(|k| !keep(k)).cloned().collect();
        for key in &gone {
            self.keys.remove(key);
        }
        self.access.release(&gone);
    }

    /// Releases them all.
    pub fn release(&mut self) {
        let keys: Vec<String> = self.keys.drain().collect();
        self.access.release(&keys);
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// A store used by one thread at a time (`regua replay`, a command, a test): nothing to
/// claim.
pub struct Alone<'a>(std::cell::RefCell<&'a mut dyn Store>);

impl<'a> Alone<'a> {
    /// `store`, used alone.
    pub fn new(store: &'a mut dyn Store) -> Alone<'a> {
        Alone(std::cell::RefCell::new(store))
    }
}

impl Access for Alone<'_> {
    fn with(&self, f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>) -> anyhow::Result<()> {
        f(&mut **self.0.borrow_mut())
    }

    fn claim(&self, _: &[String]) {}

    fn try_claim(&self, _: &[String]) -> bool {
        true
    }

    fn release(&self, _: &[String]) {}
}

/// Claims shared with other processes (replicas on one database): what keeps two replicas
/// from deciding the same customer or input at once. A process's own threads are kept apart
/// by [`Shared`] first; only what no thread of it holds is asked for here.
pub trait Locks: Send + Sync {
    /// Takes every one of `keys` if no other process holds any of them (and answers `true`),
    /// or none.
    fn try_lock(&self, keys: &[String]) -> bool;
    /// Gives `keys` back.
    fn unlock(&self, keys: &[String]);
    /// Takes the lock for work on every customer (scheduling campaigns' timers), if no other
    /// process has it.
    fn try_lock_all(&self) -> bool;
    /// Gives the lock for work on every customer back.
    fn unlock_all(&self);
}

/// The lock of the one thread, among every process sharing the store, waiting for claims
/// while holding others ([`Access::claim_holding`]).
const HOLDING: &str = "regua:waiting-holding";

/// How often a claim another process holds is asked for again.
const POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// What is claimed.
#[derive(Default)]
struct Claims {
    held: HashSet<String>,
    /// A thread works, or waits to work, on every customer (scheduling campaigns' timers): no
    /// claim is granted, so the claims held run out.
    exclusive: bool,
}

/// A store shared by threads: locked for each commit (and each use outside the steps), read
/// through connections of its own, with claims on the customers and input ids being decided.
pub struct Shared {
    /// Connections for reads ([`Store::reader`]) not in use. Before `store`: they close
    /// first, so the store's own connection is the last (SQLite folds its log in then).
    readers: Mutex<Vec<Box<dyn Store>>>,
    store: Mutex<Box<dyn Store>>,
    claims: Mutex<Claims>,
    released: Condvar,
    /// The claims shared with other processes, if the store is shared.
    locks: Option<Box<dyn Locks>>,
    /// Held by the one thread of this process waiting for claims while holding others
    /// ([`Access::claim_holding`]).
    holding: Mutex<()>,
}

impl Shared {
    /// `store`, to share (with other processes too, if the store is shared: its claims are
    /// then also the database's).
    pub fn new(store: Box<dyn Store>) -> anyhow::Result<Shared> {
        Ok(Shared {
            readers: Mutex::new(Vec::new()),
            locks: store.locks()?,
            holding: Mutex::new(()),
            store: Mutex::new(store),
            claims: Mutex::new(Claims::default()),
            released: Condvar::new(),
        })
    }

    /// Claims `keys`, waiting until `until` at most (`None`: for as long as it takes), while
    /// a thread of this process holds any (or work on every customer is waiting or running,
    /// unless `despite_exclusive`), or another process holds any; answers whether it did.
    fn wait_for(
        &self,
        keys: &[String],
        until: Option<std::time::Instant>,
        despite_exclusive: bool,
    ) -> bool {
        let expired = || until.is_some_and(|u| std::time::Instant::now() >= u);
        loop {
            let mut claims = self.claims();
            while (claims.exclusive && !despite_exclusive)
                || keys.iter().any(|k| claims.held.contains(k))
            {
                if expired() {
                    return false;
                }
                let wait = until.map_or(std::time::Duration::from_secs(60), |u| {
                    u.saturating_duration_since(std::time::Instant::now())
                });
                claims = self
                    .released
                    .wait_timeout(claims, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            claims.held.extend(keys.iter().cloned());
            drop(claims);
            let Some(locks) = &self.locks else {
                return true;
            };
            if locks.try_lock(keys) {
                return true;
            }
            // Another process holds one of them: asked again shortly, holding none meanwhile.
            self.unhold(keys);
            if expired() {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Lets go of claims held in this process.
    fn unhold(&self, keys: &[String]) {
        let mut claims = self.claims();
        for k in keys {
            claims.held.remove(k);
        }
        drop(claims);
        self.released.notify_all();
    }

    fn claims(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store once no customer is claimed, no claim granted until it is done:
    /// for work on every customer. The caller holds no claim.
    pub fn exclusive<R>(&self, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        let mut claims = self.claims();
        while claims.exclusive {
            claims = self
                .released
                .wait(claims)
                .unwrap_or_else(|e| e.into_inner());
        }
        claims.exclusive = true;
        while !claims.held.is_empty() {
            claims = self
                .released
                .wait(claims)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(claims);
        if let Some(locks) = &self.locks {
            // One process at a time schedules; the others' steps go on (docs/RUNTIME.md).
            while !locks.try_lock_all() {
                std::thread::sleep(POLL * 10);
            }
        }
        let out = {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            f(store.as_mut())
        };
        if let Some(locks) = &self.locks {
            locks.unlock_all();
        }
        self.claims().exclusive = false;
        self.released.notify_all();
        out
    }

    /// Runs `f` on the store, alone (reads, and writes no step makes: the outbox's delivery
    /// states).
    pub fn lock<R>(&self, f: impl FnOnce(&mut dyn Store) -> R) -> R {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        f(store.as_mut())
    }
}

impl Access for Shared {
    fn with(&self, f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.lock(|store| f(store))
    }

    /// On a reader of its own, so a wave's reads (and the decoding of its records) do not
    /// wait for another wave's commit: the customers and ids read are claimed, so no commit
    /// in flight changes them.
    fn reading(
        &self,
        f: &mut dyn FnMut(&mut dyn Store) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let idle = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut reader = match idle {
            Some(reader) => reader,
            None => match self.lock(|store| store.reader())? {
                Some(reader) => reader,
                None => return self.with(f),
            },
        };
        // One transaction: the store's locks taken once for all the reads.
        let out = reader.batch(f);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reader);
        out
    }

    fn claim(&self, keys: &[String]) {
        self.wait_for(keys, None, false);
    }

    fn try_claim(&self, keys: &[String]) -> bool {
        self.wait_for(keys, Some(std::time::Instant::now()), false)
    }

    fn claim_holding(&self, keys: &[String]) -> bool {
        let Ok(_one) = self.holding.try_lock() else {
            return false;
        };
        let token = [HOLDING.to_owned()];
        if let Some(locks) = &self.locks
            && !locks.try_lock(&token)
        {
            return false;
        }
        // Work on every customer cannot have started (it waits for every claim to go, the
        // caller's too) and must not hold this off: were it waiting to start, neither would
        // go on.
        self.wait_for(keys, None, true);
        if let Some(locks) = &self.locks {
            locks.unlock(&token);
        }
        true
    }

    fn release(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        if let Some(locks) = &self.locks {
            locks.unlock(keys);
        }
        self.unhold(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Shared) {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Sqlite::open(dir.path()).unwrap();
        (dir, Shared::new(Box::new(store)).unwrap())
    }

    #[test]
    fn a_claimed_key_waits_for_its_release_and_others_do_not() {
        let (_dir, shared) = store();
        let shared = Arc::new(shared);
        let a = vec![customer_key("a")];
        shared.claim(&a);
        assert!(!shared.try_claim(&[customer_key("a")]));
        assert!(shared.try_claim(&[customer_key("b")]));
        assert!(
            shared.try_claim(&[input_key("a")]),
            "customers and ids apart"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let other = shared.clone();
        let waiter = std::thread::spawn(move || {
            other.claim(&[customer_key("a")]);
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "claimed twice"
        );
        shared.release(&a);
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the release lets the waiting thread claim");
        waiter.join().unwrap();
        assert!(!shared.try_claim(&[customer_key("a")]));
    }

    /// Between a request's waves a thread keeps the customers it has inputs ahead for.
    #[test]
    fn release_but_keeps_what_it_is_told_and_lets_the_rest_go() {
        let (_dir, shared) = store();
        let mut claimed = Claimed::new(&shared);
        let keys = [customer_key("a"), customer_key("b"), input_key("x")];
        assert!(claimed.try_add(&keys));
        claimed.release_but(|key| key == customer_key("a"));
        assert!(claimed.holds(&customer_key("a")));
        assert!(!claimed.holds(&customer_key("b")) && !claimed.holds(&input_key("x")));
        assert!(!shared.try_claim(&[customer_key("a")]), "a is still held");
        assert!(shared.try_claim(&[customer_key("b"), input_key("x")]));
        shared.release(&[customer_key("b"), input_key("x")]);
        drop(claimed);
        assert!(
            shared.try_claim(&[customer_key("a")]),
            "gone with the claims"
        );
    }

    /// Two threads each holding what the other wants never both wait: the second to ask is
    /// told at once, and lets its claims go.
    #[test]
    fn only_one_thread_at_a_time_waits_holding_claims() {
        let (_dir, shared) = store();
        let shared = Arc::new(shared);
        let (x, y) = (customer_key("x"), customer_key("y"));
        assert!(shared.try_claim(std::slice::from_ref(&x)));
        let other = shared.clone();
        let (x2, y2) = (x.clone(), y.clone());
        let waiter = std::thread::spawn(move || {
            assert!(other.try_claim(std::slice::from_ref(&y2)));
            let got = other.claim_holding(std::slice::from_ref(&x2));
            other.release(&[x2, y2]);
            got
        });
        let started = std::time::Instant::now();
        while shared.holding.try_lock().is_ok() {
            assert!(started.elapsed() < Duration::from_secs(30), "never waited");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            !shared.claim_holding(std::slice::from_ref(&y)),
            "a second thread waited holding claims"
        );
        shared.release(std::slice::from_ref(&x));
        assert!(waiter.join().unwrap(), "the waiting thread got its claim");
        assert!(shared.try_claim(&[x, y]));
    }

    #[test]
    fn exclusive_work_waits_for_claims_and_holds_new_ones_off() {
        let (_dir, shared) = store();
        let shared = Arc::new(shared);
        let a = vec![customer_key("a")];
        shared.claim(&a);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = shared.clone();
        let worker = std::thread::spawn(move || {
            other.exclusive(|_| {
                tx.send("in").unwrap();
                done_rx.recv().unwrap();
            });
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "exclusive while a customer is claimed"
        );
        shared.release(&a);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "in");
        assert!(
            !shared.try_claim(&[customer_key("b")]),
            "a claim granted during exclusive work"
        );
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(shared.try_claim(&[customer_key("b")]));
    }

    #[test]
    fn reads_see_the_last_commit_and_do_not_wait_for_one_in_progress() {
        let (dir, shared) = store();
        let shared = Arc::new(shared);
        let commit = |id: &str, at: i64| {
            let change = super::super::store::Change {
                customer: id.to_owned(),
                record: Some(regua_sdk::Record {
                    id: id.to_owned(),
                    ..Default::default()
                }),
                at: regua_sdk::Timestamp::from_millis(at),
                event_id: Some(format!("e-{id}-{at}")),
                ..Default::default()
            };
            let access: &dyn Access = shared.as_ref();
            access.with(&mut |store| store.commit(&change)).unwrap();
        };
        let read = |id: &str| {
            let access: &dyn Access = shared.as_ref();
            access
                .read(|store| Ok(store.customer(id)?.and_then(|s| s.clock)))
                .unwrap()
                .map(|c| c.as_millis())
        };
        commit("a", 1_000);
        assert_eq!(read("a"), Some(1_000));
        commit("a", 2_000);
        assert_eq!(read("a"), Some(2_000), "a reader kept an old snapshot");

        // Another thread holds the store (a commit in progress): reads go on.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = shared.clone();
        let holder = std::thread::spawn(move || {
            other.lock(|_| {
                held_tx.send(()).unwrap();
                done_rx.recv().unwrap();
            })
        });
        held_rx.recv().unwrap();
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let reading = shared.clone();
        let reader = std::thread::spawn(move || {
            let access: &dyn Access = reading.as_ref();
            let clock = access
                .read(|store| Ok(store.customer("a")?.and_then(|s| s.clock)))
                .unwrap();
            read_tx.send(clock.map(|c| c.as_millis())).unwrap();
        });
        assert_eq!(
            read_rx.recv_timeout(Duration::from_secs(30)),
            Ok(Some(2_000)),
            "a read waited for the store held by a commit"
        );
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        reader.join().unwrap();

        // The readers close before the store's own connection, which removes the log.
        drop(shared);
        assert!(
            !dir.path().join("regua.db-wal").exists(),
            "the write-ahead log outlived the store"
        );
    }
}
