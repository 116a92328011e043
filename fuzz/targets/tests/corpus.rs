//! Runs every fuzz target over its checked-in corpus (`fuzz/corpus/<target>/`) and over
//! deterministic mutations of it, without a fuzzer, so `cargo test` exercises every target.
//!
//! Besides "no panic" (the bodies' own oracles included), this binary checks two things a fuzzer
//! run does not:
//!
//! - **Allocation bound** for the decoder targets: a counting global allocator tracks, per
//!   thread, the bytes live on the calling thread; the peak while a body runs, above what was
//!   live before, must stay within [`alloc_budget`]: `64 x input + 4 MiB` for `run_file` and
//!   `page`, `64 x input + 16 MiB` for `wal_segment` and `meta_log`, which also open a database
//!   (page cache, memtables, the template's files copied into a `MemFs`). Allocations by the
//!   engine's background threads are not counted (they start from the template's files, not
//!   from the input).
//! - **Panics swallowed by the engine**: the engine catches a panicking background thread and
//!   poisons the database (an error, not a crash), which would hide a bug from these tests; a
//!   panic hook counts panics on threads other than the test threads, and every test fails if
//!   any happened.
//!
//! More mutations: `STRATA_FUZZ_MUTATIONS=5000 cargo test -p strata-fuzz --test corpus`
//! (the count is per target; the default keeps the whole binary under ~20 s in debug).
//! Regenerate the corpus: `cargo test -p strata-fuzz --test corpus -- --ignored generate_corpus`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use strata_fuzz::corpus::{self, Rng};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static TEST_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn note(delta: isize) {
    // `try_with`: allocations during thread teardown must not panic inside the allocator. The
    // cells are const-initialised without destructors, so this never allocates.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged
// and only updates thread-local counters besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received; the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `body` and returns the peak number of bytes it had allocated (net) on this thread.
fn peak_allocation(body: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    body();
    let peak = PEAK.with(Cell::get);
    (peak - base).max(0) as usize
}

/// The allocation budget of a decoder target for an input of `len` bytes; `None`: not checked.
fn alloc_budget(target: &str, len: usize) -> Option<usize> {
    let fixed = match target {
        "run_file" | "page" => 4 << 20,
        "wal_segment" | "meta_log" => 16 << 20,
        _ => return None,
    };
    Some(64 * len + fixed)
}

static BACKGROUND_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_background_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !TEST_THREAD.with(Cell::get) {
                BACKGROUND_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    TEST_THREAD.with(|t| t.set(true));
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let bytes = std::fs::read(&path).expect("corpus file");
            (name, bytes)
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} holds {} files; regenerate the corpus (see fuzz/README.md)",
        dir.display(),
        files.len()
    );
    files
}

fn mutations(default: usize) -> usize {
    std::env::var("STRATA_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn target(name: &str) -> fn(&[u8]) {
    strata_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Runs `name` over its corpus and `mutation_count` mutations of it; returns (inputs run, the
/// largest allocation peak seen relative to its budget).
fn run_target(name: &str, mutation_count: usize) -> usize {
    count_background_panics();
    let body = target(name);
    // Build whatever the target builds once per process (the template database) outside the
    // measurements.
    body(&[]);
    let files = corpus(name);
    let mut rng = Rng::new(0xc0_ffee ^ name.len() as u64);
    let mut inputs: Vec<(String, Vec<u8>)> = files.clone();
    for i in 0..mutation_count {
        let (file, bytes) = &files[rng.below(files.len())];
        inputs.push((
            format!("mutation {i} of {file}"),
            corpus::mutate(bytes, &mut rng),
        ));
    }
    let mut largest_peak = (0, 0);
    for (what, bytes) in &inputs {
        let peak = peak_allocation(|| body(bytes));
        largest_peak = largest_peak.max((peak, bytes.len()));
        if let Some(budget) = alloc_budget(name, bytes.len()) {
            assert!(
                peak <= budget,
                "{name}: {what} ({} bytes) allocated {peak} bytes at its peak, above the budget of {budget}",
                bytes.len()
            );
        }
        assert_eq!(
            BACKGROUND_PANICS.load(Ordering::SeqCst),
            0,
            "{name}: a background thread panicked (see the output above), last input: {what}"
        );
    }
    println!(
        "{name}: {} inputs; largest allocation peak {} bytes (input of {} bytes)",
        inputs.len(),
        largest_peak.0,
        largest_peak.1
    );
    inputs.len()
}

#[test]
fn run_file_corpus_and_mutations() {
    assert!(run_target("run_file", mutations(2000)) > 2000);
}

#[test]
fn page_corpus_and_mutations() {
    assert!(run_target("page", mutations(3000)) > 3000);
}

#[test]
fn wal_segment_corpus_and_mutations() {
    assert!(run_target("wal_segment", mutations(300)) > 300);
}

#[test]
fn meta_log_corpus_and_mutations() {
    assert!(run_target("meta_log", mutations(500)) > 500);
}

#[test]
fn engine_model_corpus_and_mutations() {
    assert!(run_target("engine_model", mutations(200)) > 200);
}

/// The model corpus must reach what the target is for: crashes, and failures after injected
/// faults followed by recovery.
#[test]
fn engine_model_corpus_reaches_crashes_and_faults() {
    count_background_panics();
    let mut total = strata_fuzz::ModelStats::default();
    for (_, bytes) in corpus("engine_model") {
        let s = strata_fuzz::engine_model_stats(&bytes);
        total.ops += s.ops;
        total.commits += s.commits;
        total.crashes += s.crashes;
        total.faults_set += s.faults_set;
        total.failures_recovered += s.failures_recovered;
        total.reopens += s.reopens;
    }
    println!("engine_model corpus: {total:?}");
    assert!(total.commits > 100, "{total:?}");
    assert!(total.crashes > 5, "{total:?}");
    assert!(total.failures_recovered > 0, "{total:?}");
    assert!(total.reopens > 5, "{total:?}");
}

#[test]
fn txn_model_corpus_and_mutations() {
    assert!(run_target("txn_model", mutations(150)) > 150);
}

/// The transaction corpus must reach what the target is for: conflicts, commits with and
/// without writes, rollbacks to savepoints, plain writes between transactions.
#[test]
fn txn_model_corpus_reaches_conflicts_and_commits() {
    count_background_panics();
    let mut total = strata_fuzz::TxnStats::default();
    for (_, bytes) in corpus("txn_model") {
        let s = strata_fuzz::txn_model_stats(&bytes);
        total.ops += s.ops;
        total.begun += s.begun;
        total.writer_commits += s.writer_commits;
        total.reader_commits += s.reader_commits;
        total.conflicts += s.conflicts;
        total.savepoint_rollbacks += s.savepoint_rollbacks;
        total.plain_writes += s.plain_writes;
    }
    println!("txn_model corpus: {total:?}");
    assert!(total.writer_commits > 50, "{total:?}");
    assert!(total.reader_commits > 10, "{total:?}");
    assert!(total.conflicts > 10, "{total:?}");
    assert!(total.savepoint_rollbacks > 5, "{total:?}");
    assert!(total.plain_writes > 20, "{total:?}");
}

/// The valid files of the corpus must still be valid for this build: if the engine changed what
/// it writes (or the template database drifted), the corpus no longer reaches deep code and must
/// be regenerated.
#[test]
fn valid_corpus_files_are_accepted() {
    count_background_panics();
    use strata::sstable::{ReadOptions, Run};
    for (name, bytes) in corpus("run_file") {
        if name.starts_with("valid-") {
            let run = Run::open_with(Path::new(&name), Box::new(bytes), ReadOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(run.verify().is_ok(), "{name} does not verify");
        } else {
            let opened = Run::open_with(Path::new(&name), Box::new(bytes), ReadOptions::default());
            assert!(
                opened.map_or(true, |run| !run.verify().is_ok()),
                "{name} is meant to be damaged but verifies"
            );
        }
    }
    for (name, bytes) in corpus("page") {
        if name.starts_with("raw-") {
            let count = strata::sstable::bench_support::decode_page_all(bytes.into())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(count > 0, "{name} holds no entry");
        }
    }
    let mut valid_wal = 0;
    for (name, _) in corpus("wal_segment") {
        valid_wal += usize::from(name.starts_with("valid-"));
    }
    assert!(valid_wal >= 3, "too few valid WAL segments: {valid_wal}");
    if let Err(e) = corpus::check_valid_files(&corpus("wal_segment"), &corpus("meta_log")) {
        panic!("{e}");
    }
}

/// Writes the corpus afresh (`fuzz/corpus/<target>/`). Ignored: run it by hand after a format
/// or template change, then review and commit the files.
#[test]
#[ignore]
fn generate_corpus() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let written = corpus::generate(
        &crate_dir.join("../corpus"),
        &crate_dir.join("template.bin"),
    )
    .expect("generating the corpus");
    for path in &written {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!("{len:>8} {}", path.display());
    }
    assert!(written.len() > 40, "only {} files written", written.len());
}

/// Writes the corpus of the model targets afresh (`fuzz/corpus/engine_model/` and
/// `fuzz/corpus/txn_model/`), leaving the template and the decoder corpora alone. Ignored: run
/// it by hand after changing what those targets decode, then review and commit the files.
#[test]
#[ignore]
fn generate_model_corpus() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let written = corpus::generate_models(&crate_dir.join("../corpus")).expect("generating");
    for path in &written {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!("{len:>8} {}", path.display());
    }
    assert_eq!(written.len(), 24, "12 inputs per model target");
}
