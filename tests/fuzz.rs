//! The project's fuzz campaign (stable Rust: a deterministic mutation fuzzer, no libFuzzer).
//!
//! Targets (tests/fuzz/targets.rs): `mrc`, `star`, `cs`, `pkl`, `npy`, `npz`, `pdb`, `mmcif`, `pc-obs`, `pc-gt`, `torch-pkl` (a torch checkpoint's data.pkl against fixed storages), `torch-zip` — each
//! writes a mutated input to a file and runs the reader and the parsing layers the CLI runs after it.
//! A failure is a panic, a hang (no answer in `CRYOFIELD_FUZZ_DEADLINE` seconds, default 10) or an
//! allocation over 256 MiB (a reader that trusted a size field); every failing input is saved as
//! `tests/fuzz_corpus/<target>/<hash>.bin`, and `fuzz_corpus_replays` runs every saved input on every
//! `cargo test`.
//!
//! Budget:
//! - plain `cargo test --test fuzz`: a fixed number of inputs per target (a few seconds in all);
//! - `CRYOFIELD_FUZZ_SECS=N`: N seconds **per target**, printing per target the executions, errors
//!   (rejections: expected), panics, hangs and absurd allocations, then a summary line;
//! - `CRYOFIELD_FUZZ_SEED=S` (default 0x5eed): the mutation seed; the same seed and budget in
//!   iterations gives the same inputs;
//! - `CRYOFIELD_FUZZ_TARGETS=mrc,star`: only these targets.
//!
//! Run it with `--nocapture` to see the figures; `tools/fuzz.sh` runs a long campaign.

#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/targets.rs"]
mod targets;

use engine::{campaign, Budget, Runner, Stats, Target};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: engine::GuardAlloc = engine::GuardAlloc;

/// The tests of this binary run one at a time: the allocation guard's record is global.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inputs per target under plain `cargo test`.
const DEFAULT_ITERATIONS: u64 = 150;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus")
}

fn deadline() -> Duration {
    let secs = std::env::var("CRYOFIELD_FUZZ_DEADLINE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(10.0);
    Duration::from_secs_f64(secs)
}

fn selected(all: Vec<Target>) -> Vec<Target> {
    match std::env::var("CRYOFIELD_FUZZ_TARGETS") {
        Ok(list) if !list.trim().is_empty() => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            for n in &names {
                assert!(
                    all.iter().any(|t| t.name == *n),
                    "CRYOFIELD_FUZZ_TARGETS: unknown target `{n}`"
                );
            }
            all.into_iter()
                .filter(|t| names.contains(&t.name))
                .collect()
        }
        _ => all,
    }
}

#[test]
fn fuzz_campaign() {
    let _serial = serial();
    engine::init();
    let budget =
        match std::env::var("CRYOFIELD_FUZZ_SECS") {
            Ok(s) => Budget::Seconds(s.parse::<f64>().unwrap_or_else(|_| {
                panic!("CRYOFIELD_FUZZ_SECS: `{s}` is not a number of seconds")
            })),
            Err(_) => Budget::Iterations(DEFAULT_ITERATIONS),
        };
    let seed = match std::env::var("CRYOFIELD_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            };
            parsed.unwrap_or_else(|| panic!("CRYOFIELD_FUZZ_SEED: `{s}` is not an integer"))
        }
        Err(_) => 0x5eed,
    };
    let t0 = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    println!(
        "fuzz: seed {seed:#x}, budget {budget:?} per target, deadline {:?}",
        deadline()
    );
    for t in selected(targets::all()) {
        let st = campaign(&t, &corpus_root(), budget, seed, deadline());
        println!("{}", st.line(t.name));
        for ex in &st.unnamed_examples {
            println!("  error not naming the file: {ex}");
        }
        for f in &st.failures {
            println!("  FAIL {f}");
        }
        total.execs += st.execs;
        total.ok += st.ok;
        total.errors += st.errors;
        total.unnamed_errors += st.unnamed_errors;
        total.panics += st.panics;
        total.hangs += st.hangs;
        total.absurd_allocs += st.absurd_allocs;
        failures.extend(st.failures.into_iter().map(|f| format!("{}: {f}", t.name)));
    }
    total.secs = t0.elapsed().as_secs_f64();
    println!("{}", total.line("TOTAL"));
    println!(
        "fuzz summary: {} execs, {} errors, {} panics, {} hangs, {} absurd allocs in {:.1} s (seed {seed:#x})",
        total.execs, total.errors, total.panics, total.hangs, total.absurd_allocs, total.secs
    );
    assert!(
        failures.is_empty(),
        "the fuzz campaign found {} failing inputs (saved under tests/fuzz_corpus):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every saved failing input: must not panic, hang or allocate absurdly (errors are fine).
#[test]
fn fuzz_corpus_replays() {
    let _serial = serial();
    engine::init();
    let root = corpus_root();
    let Ok(dirs) = std::fs::read_dir(&root) else {
        println!("no corpus at {}", root.display());
        return;
    };
    let all = targets::all();
    let mut failures = Vec::new();
    let mut n = 0;
    let mut dirs: Vec<_> = dirs.filter_map(|d| d.ok()).map(|d| d.path()).collect();
    dirs.sort();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let target = all
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{}: no fuzz target named `{name}`", dir.display()));
        let mut runner = Runner::new(target, &root, deadline());
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("listing a corpus folder")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).expect("reading a corpus input");
            n += 1;
            match runner.exec(&bytes) {
                engine::Outcome::Ok | engine::Outcome::Error(_) => {}
                bad => failures.push(format!("{}: {bad:?}", f.display())),
            }
        }
    }
    println!("replayed {n} corpus inputs");
    assert!(
        failures.is_empty(),
        "{} corpus inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The mutator is a function of its seed: the same seed gives the same inputs (a campaign can be
/// replayed), a different one different inputs.
#[test]
fn mutations_are_deterministic() {
    let seed = b"data_\nloop_\n_rlnDefocusU #1\n1.5\n2.5\n".to_vec();
    let run = |s: u64| {
        let mut rng = engine::Rng::new(s);
        (0..200)
            .map(|_| engine::mutate(&mut rng, &seed, &seed, true, &[b"loop_"]))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

/// A target with a planted panic, hang and oversized allocation, each behind its own first byte.
fn planted(p: &Path) -> anyhow::Result<()> {
    let b = std::fs::read(p)?;
    match b.first() {
        Some(b'P') => panic!("planted panic"),
        Some(b'H') => std::thread::sleep(Duration::from_secs(3)),
        Some(b'A') => {
            let v: Vec<u8> = Vec::with_capacity(engine::ALLOC_LIMIT + 1);
            std::hint::black_box(&v);
        }
        Some(b'E') => anyhow::bail!("{}: planted error", p.display()),
        _ => {}
    }
    Ok(())
}

/// The engine sees each kind of failure (so a campaign that reports none has looked), saves the input,
/// and the runner keeps working after a hang.
#[test]
fn engine_detects_planted_failures() {
    let _serial = serial();
    engine::init();
    let dir = tempfile::tempdir().unwrap();
    let target = Target {
        name: "planted",
        ext: "bin",
        text: false,
        dict: &[],
        seeds: vec![],
        run: planted,
    };
    let mut r = Runner::new(&target, dir.path(), Duration::from_millis(500));
    assert!(matches!(r.exec(b"ok"), engine::Outcome::Ok));
    assert!(matches!(r.exec(b"E"), engine::Outcome::Error(m) if m.contains("planted error")));
    match r.exec(b"P") {
        engine::Outcome::Panic(m) => assert!(m.contains("planted panic"), "{m}"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(matches!(r.exec(b"A"), engine::Outcome::AbsurdAlloc(n) if n > engine::ALLOC_LIMIT));
    assert!(matches!(r.exec(b"H"), engine::Outcome::Hang));
    // a fresh worker after the hang
    assert!(matches!(r.exec(b"ok"), engine::Outcome::Ok));
    let saved = r.save(b"P");
    assert_eq!(std::fs::read(&saved).unwrap(), b"P");
    assert!(saved.starts_with(dir.path().join("planted")));
}
