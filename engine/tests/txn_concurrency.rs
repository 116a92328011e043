//! Concurrent transactions: the bank invariant, and a serial-replay checker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata::{Db, Error, Keyspace, KeyspaceOptions, Options, Transaction};

fn rounds(default: u64) -> u64 {
    std::env::var("STRATA_TXN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ACCOUNTS: u64 = 8;
const INITIAL: i64 = 100;

fn balance(tx: &Transaction, ks: &Keyspace, account: u64) -> strata::Result<i64> {
    let value = tx.get(ks, account.to_be_bytes())?.expect("accounts exist");
    Ok(i64::from_le_bytes(value[..].try_into().expect("8 bytes")))
}

fn total(tx: &Transaction, ks: &Keyspace) -> i64 {
    tx.iter(ks)
        .map(|r| {
            let (_, v) = r.expect("scan");
            i64::from_le_bytes(v[..].try_into().expect("8 bytes"))
        })
        .sum()
}

/// Threads move money between accounts with `transact` while others sum all accounts in
/// read-only and read-write transactions (mixing point reads and scans); the total never changes,
/// also after dumps, compaction and a reopen.
#[test]
fn bank_transfers_keep_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let options = Options {
            memory_limit_bytes: 2 << 20,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).unwrap();
        let ks = db.keyspace("accounts", KeyspaceOptions::default()).unwrap();
        (db, ks)
    };
    let (db, ks) = open();
    for account in 0..ACCOUNTS {
        ks.put(account.to_be_bytes(), INITIAL.to_le_bytes())
            .unwrap();
    }
    let expected = INITIAL * ACCOUNTS as i64;
    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..3u64 {
        let (db, ks, transfers) = (db.clone(), ks.clone(), Arc::clone(&transfers));
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(0x1234_5678 + t);
            for _ in 0..rounds(300) {
                let from = rng.below(ACCOUNTS);
                let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                let amount = rng.below(20) as i64;
                db.transact(|tx| {
                    let a = balance(tx, &ks, from)?;
                    let b = balance(tx, &ks, to)?;
                    tx.put(&ks, from.to_be_bytes(), (a - amount).to_le_bytes())?;
                    tx.put(&ks, to.to_be_bytes(), (b + amount).to_le_bytes())?;
                    Ok(())
                })
                .unwrap();
                transfers.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut checkers = Vec::new();
    for read_only in [true, false] {
        let (db, ks, stop) = (db.clone(), ks.clone(), Arc::clone(&stop));
        checkers.push(std::thread::spawn(move || {
            let mut checks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if read_only {
                    let tx = db.begin_read_only();
                    assert_eq!(total(&tx, &ks), expected);
                    let sum: i64 = (0..ACCOUNTS).map(|a| balance(&tx, &ks, a).unwrap()).sum();
                    assert_eq!(sum, expected);
                    checks += 1;
                } else {
                    // A read-write transaction that only reads may be sent to a read view, but
                    // what it sees is always consistent.
                    let tx = db.begin();
                    let mut sum = 0;
                    let mut ok = true;
                    for a in 0..ACCOUNTS {
                        match balance(&tx, &ks, a) {
                            Ok(v) => sum += v,
                            Err(Error::Conflict { .. }) => ok = false,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if ok {
                        assert_eq!(sum, expected);
                        tx.commit().unwrap();
                        checks += 1;
                    }
                }
            }
            checks
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for c in checkers {
        assert!(c.join().unwrap() > 0, "the checker ran");
    }
    let stats = db.stats().transactions;
    assert_eq!(stats.active, 0);
    assert!(
        stats.commits >= transfers.load(Ordering::Relaxed),
        "{stats:?}"
    );
    db.flush().unwrap();
    ks.compact().unwrap();
    drop(ks);
    db.close().unwrap();
    let (db, ks) = open();
    assert_eq!(total(&db.begin_read_only(), &ks), expected);
}

/// One transaction's observations, for the replay.
#[derive(Debug, Clone)]
enum Step {
    Get(u8, Option<u32>),
    Scan(u8, u8, Vec<(u8, u32)>),
    Put(u8, u32),
    Delete(u8),
}

type Model = BTreeMap<u8, u32>;

/// Committed transactions in commit order: (wrote something, observations).
type History = Vec<(bool, Vec<Step>)>;

/// Replays `steps` on `model` (writes applied to a private overlay first); true if every
/// observation matches. Applies the writes to `model` when `apply`.
fn replay(model: &mut Model, steps: &[Step], apply: bool) -> bool {
    let mut view = model.clone();
    for step in steps {
        match step {
            Step::Get(k, seen) => {
                if view.get(k) != seen.as_ref() {
                    return false;
                }
            }
            Step::Scan(lo, hi, seen) => {
                let actual: Vec<(u8, u32)> = view.range(*lo..*hi).map(|(k, v)| (*k, *v)).collect();
                if &actual != seen {
                    return false;
                }
            }
            Step::Put(k, v) => {
                view.insert(*k, *v);
            }
            Step::Delete(k) => {
                view.remove(k);
            }
        }
    }
    if apply {
        *model = view;
    }
    true
}

fn value_of(v: &[u8]) -> u32 {
    u32::from_le_bytes(v.try_into().expect("4 bytes"))
}

/// Random concurrent transactions over a few keys. Commits are serialized by a test lock so
/// their order is known; everything else runs concurrently. Replayed serially in commit order,
/// every committed transaction must observe exactly what it observed, and every transaction that
/// committed without writing must fit at some point of that order.
#[test]
fn committed_transactions_replay_serially() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let ks = db.keyspace("t", KeyspaceOptions::default()).unwrap();
    let history: Arc<Mutex<History>> = Arc::new(Mutex::new(Vec::new()));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let (db, ks, history, conflicts) = (
            db.clone(),
            ks.clone(),
            Arc::clone(&history),
            Arc::clone(&conflicts),
        );
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(0xdead_beef + t * 7919);
            let mut counter = 0u32;
            for _ in 0..rounds(250) {
                let mut tx = db.begin();
                let mut steps = Vec::new();
                let mut failed = false;
                for _ in 0..1 + rng.below(5) {
                    let key = rng.below(8) as u8;
                    let result = match rng.below(6) {
                        0 | 1 => tx.get(&ks, [key]).map(|v| {
                            steps.push(Step::Get(key, v.map(|v| value_of(&v))));
                        }),
                        2 => {
                            let hi = key + 1 + rng.below(4) as u8;
                            let seen: strata::Result<Vec<(u8, u32)>> = tx
                                .range(&ks, [key]..[hi])
                                .map(|r| r.map(|(k, v)| (k[0], value_of(&v))))
                                .collect();
                            seen.map(|seen| steps.push(Step::Scan(key, hi, seen)))
                        }
                        3 | 4 => {
                            counter += 1;
                            let value = (t as u32) << 24 | counter;
                            tx.put(&ks, [key], value.to_le_bytes())
                                .map(|()| steps.push(Step::Put(key, value)))
                        }
                        _ => tx
                            .delete(&ks, [key])
                            .map(|()| steps.push(Step::Delete(key))),
                    };
                    if let Err(e) = result {
                        assert!(e.is_conflict(), "{e}");
                        failed = true;
                        break;
                    }
                }
                if failed {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let writes = steps
                    .iter()
                    .any(|s| matches!(s, Step::Put(..) | Step::Delete(..)));
                let mut history = history.lock().unwrap();
                match tx.commit() {
                    Ok(()) => history.push((writes, steps)),
                    Err(e) => {
                        assert!(e.is_conflict(), "{e}");
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let history = history.lock().unwrap();
    let writers: Vec<&Vec<Step>> = history.iter().filter(|(w, _)| *w).map(|(_, s)| s).collect();
    let mut model = Model::new();
    let mut states = vec![model.clone()];
    for (i, steps) in writers.iter().enumerate() {
        assert!(
            replay(&mut model, steps, true),
            "committed transaction #{i} does not replay serially: {steps:?}"
        );
        states.push(model.clone());
    }
    for (_, steps) in history.iter().filter(|(w, _)| !*w) {
        assert!(
            states.iter().any(|s| replay(&mut s.clone(), steps, false)),
            "a read-only transaction fits nowhere in the commit order: {steps:?}"
        );
    }
    // The database ends in the replayed state.
    let actual: Model = ks
        .iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k[0], value_of(&v))
        })
        .collect();
    assert_eq!(actual, model);
    assert!(writers.len() > 100, "enough commits to mean something");
    assert!(
        conflicts.load(Ordering::Relaxed) > 0,
        "the workload contends"
    );
}
