//! The fuzz engine: a deterministic mutator (splitmix64 from a seed), a runner that executes one input
//! under `catch_unwind` on a worker thread with a deadline, and the corpus of failing inputs.
//!
//! A failure is a panic (message and location recorded by a quiet panic hook), a hang (no answer within
//! the deadline), or an absurd allocation (a request over [`ALLOC_LIMIT`] while an input runs: a reader
//! that trusted a header size instead of checking it against the file's size). Errors are the expected
//! outcome for most mutated inputs and are only counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// One reader (and the parsing layers a user hits right after it) fed bytes through a file.
pub struct Target {
    /// name of the corpus folder `tests/fuzz_corpus/<name>`
    pub name: &'static str,
    /// extension of the input file (the readers dispatch on it)
    pub ext: &'static str,
    /// text format: token- and line-level mutations as well as byte-level ones
    pub text: bool,
    /// tokens worth inserting (keywords, column names, opcodes)
    pub dict: &'static [&'static [u8]],
    /// the starting inputs
    pub seeds: Vec<Vec<u8>>,
    /// run the reader on the file; `Err` is a rejection (fine), a panic is a bug
    pub run: fn(&Path) -> anyhow::Result<()>,
}

// ---------------------------------------------------------------------------------------------------
// Deterministic randomness

/// splitmix64: small, fast, and the same sequence on every machine for a given seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// FNV-1a 64: names a corpus file by its content.
pub fn short_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

// ---------------------------------------------------------------------------------------------------
// Mutations

const BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'-', b'.', b'\n', b' ', b'#',
];

/// 32-bit words: i32 extremes, -1, sizes, and f32 NaN/inf/huge/negative (as bit patterns).
const WORDS: &[u32] = &[
    0,
    1,
    2,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x0000_ffff,
    0x0001_0000,
    1024,
    4096,
    0x7fc0_0000, // f32 NaN
    0x7f80_0000, // f32 +inf
    0xff80_0000, // f32 -inf
    0x7f7f_ffff, // f32::MAX
    0x0000_0001, // smallest subnormal
    0xbf80_0000, // -1.0f32
    0x8000_0000, // -0.0f32
];

const QWORDS: &[u64] = &[
    0,
    u64::MAX,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    1 << 32,
    1 << 40,
    0x7ff8_0000_0000_0000, // f64 NaN
    0x7ff0_0000_0000_0000, // f64 +inf
];

/// Replacements for a numeric (or any) token of a text format.
const TOKENS: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "-1e400",
    "1e-400",
    "0",
    "-0",
    "-1",
    "2147483647",
    "-2147483648",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999",
    "",
    "word",
    "1.5.2",
    "0x10",
    "+",
    "@",
    "1@",
    "@x",
    "\u{e9}\u{2603}",
];

/// Apply 1 to 4 mutations drawn from `rng` to `input` (a copy of a seed); `other` is a second seed for
/// splicing.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], text: bool, dict: &[&[u8]]) -> Vec<u8> {
    let mut b = input.to_vec();
    let n = 1 + rng.below(4);
    for _ in 0..n {
        if b.starts_with(b"\x93NUMPY") && rng.chance(2) {
            mutate_npy_header(rng, &mut b, dict);
        } else if text && rng.below(3) != 0 {
            mutate_text(rng, &mut b, dict);
        } else {
            mutate_bytes(rng, &mut b, other, dict);
        }
    }
    b
}

/// Token- and line-level mutations of a .npy (or .cs) header, a Python dict literal, which is then
/// re-padded and its length field rewritten so the data still starts where the header ends.
fn mutate_npy_header(rng: &mut Rng, b: &mut Vec<u8>, dict: &[&[u8]]) {
    let (len_bytes, hstart) = match b.get(6) {
        Some(1) => (2, 10),
        Some(2 | 3) => (4, 12),
        _ => return,
    };
    if b.len() < hstart {
        return;
    }
    let hlen = if len_bytes == 2 {
        u16::from_le_bytes([b[8], b[9]]) as usize
    } else {
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize
    };
    let Some(hend) = hstart.checked_add(hlen).filter(|&e| e <= b.len()) else {
        return;
    };
    let mut header = b[hstart..hend].to_vec();
    while header.last().is_some_and(|c| c.is_ascii_whitespace()) {
        header.pop();
    }
    if rng.chance(3) {
        replace_npy_value(rng, &mut header);
    } else {
        mutate_text(rng, &mut header, dict);
    }
    // pad with spaces and a newline to a multiple of 64 bytes in all, as numpy writes
    let total = hstart + header.len() + 1;
    header.extend(std::iter::repeat_n(b' ', (64 - total % 64) % 64));
    header.push(b'\n');
    if len_bytes == 2 && header.len() > u16::MAX as usize {
        return;
    }
    // the data as it was, or none of it (a header that declares items must be checked against it)
    let data = if rng.chance(4) {
        Vec::new()
    } else {
        b[hend..].to_vec()
    };
    b.truncate(8);
    if len_bytes == 2 {
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(&header);
    b.extend_from_slice(&data);
}

/// Values for the keys of a .npy header: sizes that are empty, huge or do not match the data, dtypes
/// that are empty, zero-sized, unsupported or nested.
const NPY_VALUES: &[(&str, &[&str])] = &[
    (
        "'descr': ",
        &[
            "[]",
            "'<f4'",
            "'<f8'",
            "'|O'",
            "'|S0'",
            "'<V0'",
            "'|b1'",
            "[('a', '<f4')]",
            "[('a', '<f4', (0,))]",
            "[('a', [])]",
            "[('a', [('b', '<i8')])]",
            "[('a', '<u4', (2147483647,))]",
        ],
    ),
    (
        "'shape': ",
        &[
            "()",
            "(0,)",
            "(1,)",
            "(2,)",
            "(3, 2)",
            "(2, 0)",
            "(67108864,)",
            "(1099511627776,)",
            "(4294967296, 4294967296)",
            "(-1,)",
            "(9223372036854775807,)",
        ],
    ),
    ("'fortran_order': ", &["True", "False", "1", "None"]),
];

/// Replace the value of `descr`, `shape` or `fortran_order` in a .npy header dict (numpy writes them in
/// that order, each followed by `, '`).
fn replace_npy_value(rng: &mut Rng, header: &mut Vec<u8>) {
    // one key, or each with probability 1/2 (a whole new header: bugs hide behind combinations)
    if rng.chance(2) {
        let (key, values) = rng.pick(NPY_VALUES);
        replace_one(rng, header, key, values);
    } else {
        for (key, values) in NPY_VALUES {
            if rng.chance(2) {
                replace_one(rng, header, key, values);
            }
        }
    }
}

fn replace_one(rng: &mut Rng, header: &mut Vec<u8>, key: &str, values: &[&str]) {
    let Ok(text) = std::str::from_utf8(header) else {
        return;
    };
    let Some(k) = text.find(key) else {
        return;
    };
    let start = k + key.len();
    // the value ends at the next top-level `, '` or at the closing `}`
    let rest = &text[start..];
    let end = match key {
        "'descr': " => rest.find(", 'fortran_order'"),
        "'fortran_order': " => rest.find(", 'shape'"),
        _ => rest.find(", }").or_else(|| rest.find('}')),
    };
    let Some(end) = end else {
        return;
    };
    let new = format!("{}{}{}", &text[..start], rng.pick(values), &rest[end..]);
    *header = new.into_bytes();
}

/// A position biased towards the start of the file (headers live there) half of the time.
fn position(rng: &mut Rng, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    if rng.chance(2) {
        rng.below(len.min(1024))
    } else {
        rng.below(len)
    }
}

fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8], dict: &[&[u8]]) {
    let len = b.len();
    match rng.below(12) {
        // flip 1..4 bits
        0 if len > 0 => {
            for _ in 0..1 + rng.below(4) {
                let p = position(rng, len);
                b[p] ^= 1 << rng.below(8);
            }
        }
        // an interesting byte
        1 if len > 0 => {
            let p = position(rng, len);
            b[p] = *rng.pick(BYTES);
        }
        // an interesting 32-bit word, little- or big-endian, often 4-aligned (header fields)
        2 | 3 if len >= 4 => {
            let mut p = position(rng, len - 3);
            if rng.chance(2) {
                p &= !3;
            }
            let w = *rng.pick(WORDS);
            let bytes = if rng.chance(4) {
                w.to_be_bytes()
            } else {
                w.to_le_bytes()
            };
            b[p..p + 4].copy_from_slice(&bytes);
        }
        // an interesting 64-bit word
        4 if len >= 8 => {
            let p = position(rng, len - 7);
            b[p..p + 8].copy_from_slice(&rng.pick(QWORDS).to_le_bytes());
        }
        // small arithmetic on a byte
        5 if len > 0 => {
            let p = position(rng, len);
            let d = 1 + rng.below(16) as u8;
            b[p] = if rng.chance(2) {
                b[p].wrapping_add(d)
            } else {
                b[p].wrapping_sub(d)
            };
        }
        // truncate
        6 if len > 0 => {
            let p = if rng.chance(2) {
                position(rng, len)
            } else {
                rng.below(len)
            };
            b.truncate(p);
        }
        // delete a chunk
        7 if len > 1 => {
            let p = rng.below(len);
            let k = 1 + rng.below((len - p).min(256));
            b.drain(p..p + k);
        }
        // insert a chunk of random bytes or a dictionary token
        8 => {
            let p = rng.below(len + 1);
            let chunk: Vec<u8> = if !dict.is_empty() && rng.chance(2) {
                rng.pick(dict).to_vec()
            } else {
                (0..1 + rng.below(32))
                    .map(|_| rng.next_u64() as u8)
                    .collect()
            };
            b.splice(p..p, chunk);
        }
        // duplicate a chunk somewhere else
        9 if len > 1 => {
            let p = rng.below(len);
            let k = 1 + rng.below((len - p).min(512));
            let chunk = b[p..p + k].to_vec();
            let q = rng.below(len + 1);
            b.splice(q..q, chunk);
        }
        // overwrite with a dictionary token
        10 if len > 0 && !dict.is_empty() => {
            let t = rng.pick(dict);
            let p = rng.below(len);
            let end = (p + t.len()).min(len);
            b[p..end].copy_from_slice(&t[..end - p]);
        }
        // splice: this input's prefix and the other seed's suffix
        11 if !other.is_empty() => {
            let p = rng.below(len + 1);
            let q = rng.below(other.len());
            b.truncate(p);
            b.extend_from_slice(&other[q..]);
        }
        _ => {
            if len > 0 {
                let p = rng.below(len);
                b[p] = rng.next_u64() as u8;
            }
        }
    }
}

/// Byte ranges of the whitespace-separated tokens of `b`.
fn tokens(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        let ws = c.is_ascii_whitespace();
        match (start, ws) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, b.len()));
    }
    out
}

/// Byte ranges of the lines of `b`, each with its newline.
fn lines(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            out.push((s, i + 1));
            s = i + 1;
        }
    }
    if s < b.len() {
        out.push((s, b.len()));
    }
    out
}

fn mutate_text(rng: &mut Rng, b: &mut Vec<u8>, dict: &[&[u8]]) {
    let toks = tokens(b);
    let lns = lines(b);
    match rng.below(9) {
        // replace a numeric token (or, one time in four, any token) with an awkward value
        0..=2 if !toks.is_empty() => {
            let numeric: Vec<_> = toks
                .iter()
                .filter(|&&(s, e)| {
                    std::str::from_utf8(&b[s..e]).is_ok_and(|t| t.parse::<f64>().is_ok())
                })
                .copied()
                .collect();
            let &(s, e) = if numeric.is_empty() || rng.chance(4) {
                rng.pick(&toks)
            } else {
                rng.pick(&numeric)
            };
            let with: Vec<u8> = if !dict.is_empty() && rng.chance(5) {
                rng.pick(dict).to_vec()
            } else {
                rng.pick(TOKENS).as_bytes().to_vec()
            };
            b.splice(s..e, with);
        }
        // drop a token (a column of one row)
        3 if !toks.is_empty() => {
            let &(s, e) = rng.pick(&toks);
            b.drain(s..e);
        }
        // duplicate a token (an extra column)
        4 if !toks.is_empty() => {
            let &(s, e) = rng.pick(&toks);
            let mut t = b[s..e].to_vec();
            t.push(b' ');
            b.splice(s..s, t);
        }
        // drop a line
        5 if !lns.is_empty() => {
            let &(s, e) = rng.pick(&lns);
            b.drain(s..e);
        }
        // duplicate a line (next to it or elsewhere)
        6 if !lns.is_empty() => {
            let &(s, e) = rng.pick(&lns);
            let mut l = b[s..e].to_vec();
            if l.last() != Some(&b'\n') {
                l.push(b'\n');
            }
            let &(q, _) = if rng.chance(2) {
                &(s, e)
            } else {
                rng.pick(&lns)
            };
            b.splice(q..q, l);
        }
        // truncate a line
        7 if !lns.is_empty() => {
            let &(s, e) = rng.pick(&lns);
            let cut = s + rng.below(e - s);
            let end = if b[e - 1] == b'\n' { e - 1 } else { e };
            if cut < end {
                b.drain(cut..end);
            }
        }
        // the same column removed from every line of a table: drop token k of each line with >k tokens
        8 if !lns.is_empty() => {
            let k = rng.below(4);
            let mut out = Vec::with_capacity(b.len());
            for &(s, e) in &lns {
                let line = &b[s..e];
                let t = tokens(line);
                if t.len() > k + 1 {
                    let (ts, te) = t[k];
                    out.extend_from_slice(&line[..ts]);
                    out.extend_from_slice(&line[te..]);
                } else {
                    out.extend_from_slice(line);
                }
            }
            *b = out;
        }
        _ => {
            b.truncate(rng.below(b.len() + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Allocation guard and quiet panics

/// An allocation larger than this while an input runs counts as a failure: every input is at most a few
/// MB, so a reader asking for more trusted a size field it should have checked against the file.
pub const ALLOC_LIMIT: usize = 256 << 20;
/// Above this the request is not even attempted: the input is saved and the process aborts (a stable
/// global allocator may neither unwind nor return null without aborting).
const ALLOC_HARD_LIMIT: usize = 2 << 30;

/// Inputs running now (on workers, including hung ones).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// The largest over-limit request seen since the last [`take_absurd_alloc`].
static ABSURD: AtomicUsize = AtomicUsize::new(0);
/// (input file, corpus folder) of the input running now, for the abort path.
static CURRENT: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
/// The last panic's message and location, recorded by the quiet hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set on the test threads: their own panics (assertion failures) print as usual.
    static HARNESS: Cell<bool> = const { Cell::new(false) };
}

/// The test binary's allocator: the system allocator plus the absurd-size check.
pub struct GuardAlloc;

fn check_size(size: usize) {
    if size > ALLOC_LIMIT && ACTIVE.load(Ordering::Relaxed) > 0 {
        ABSURD.fetch_max(size, Ordering::Relaxed);
        if size > ALLOC_HARD_LIMIT {
            abort_on_absurd(size);
        }
    }
}

#[cold]
fn abort_on_absurd(size: usize) -> ! {
    let saved = CURRENT
        .try_lock()
        .ok()
        .and_then(|g| g.clone())
        .and_then(|(input, dir)| {
            let bytes = std::fs::read(&input).ok()?;
            std::fs::create_dir_all(&dir).ok()?;
            let p = dir.join(format!("{}.bin", short_hash(&bytes)));
            std::fs::write(&p, bytes).ok()?;
            Some(p)
        });
    // straight to stderr: the test harness's capture of `eprintln!` is lost when the process aborts
    let msg = format!(
        "fuzz: a reader asked for {size} bytes (limit {ALLOC_LIMIT}); input saved to {}\n",
        saved.map_or("(could not save)".to_string(), |p| p.display().to_string())
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    std::process::abort()
}

// SAFETY: every call is forwarded unchanged to `System`; the added check only reads and writes atomics
// (and, on the abort path, never returns).
unsafe impl GlobalAlloc for GuardAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn take_absurd_alloc() -> Option<usize> {
    match ABSURD.swap(0, Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Install the quiet panic hook (once) and mark this thread as a test thread.
pub fn init() {
    static ONCE: Once = Once::new();
    HARNESS.with(|h| h.set(true));
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.load(Ordering::Relaxed) > 0 && !HARNESS.with(Cell::get) {
                if let Ok(mut g) = LAST_PANIC.lock() {
                    *g = Some(info.to_string());
                }
            } else {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------------
// Running inputs

/// What one input did.
#[derive(Debug)]
pub enum Outcome {
    Ok,
    /// a rejection, with its message
    Error(String),
    Panic(String),
    Hang,
    /// the size of the largest over-limit allocation request
    AbsurdAlloc(usize),
}

/// A worker thread running one target's inputs; replaced after a hang (the stuck thread is left
/// behind: a thread cannot be killed).
struct Worker {
    tx: Sender<PathBuf>,
    rx: Receiver<Result<Result<(), String>, String>>,
}

impl Worker {
    fn spawn(run: fn(&Path) -> anyhow::Result<()>) -> Worker {
        let (tx, job_rx) = channel::<PathBuf>();
        let (res_tx, rx) = channel();
        std::thread::Builder::new()
            .name("fuzz-worker".into())
            .spawn(move || {
                while let Ok(path) = job_rx.recv() {
                    ACTIVE.fetch_add(1, Ordering::SeqCst);
                    let r = std::panic::catch_unwind(|| run(&path));
                    ACTIVE.fetch_sub(1, Ordering::SeqCst);
                    let r = match r {
                        Ok(Ok(())) => Ok(Ok(())),
                        Ok(Err(e)) => Ok(Err(format!("{e:#}"))),
                        Err(payload) => {
                            let recorded = LAST_PANIC.lock().ok().and_then(|mut g| g.take());
                            let msg = payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "(non-string panic payload)".into());
                            Err(recorded.unwrap_or(msg))
                        }
                    };
                    if res_tx.send(r).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning a fuzz worker thread");
        Worker { tx, rx }
    }
}

/// Runs inputs of one target through a file in a private temporary folder.
pub struct Runner {
    run: fn(&Path) -> anyhow::Result<()>,
    worker: Worker,
    input: PathBuf,
    corpus_dir: PathBuf,
    deadline: Duration,
    _dir: tempfile::TempDir,
}

impl Runner {
    pub fn new(target: &Target, corpus_root: &Path, deadline: Duration) -> Runner {
        let dir = tempfile::tempdir().expect("creating a temporary folder");
        let input = dir.path().join(format!("input.{}", target.ext));
        Runner {
            run: target.run,
            worker: Worker::spawn(target.run),
            input,
            corpus_dir: corpus_root.join(target.name),
            deadline,
            _dir: dir,
        }
    }

    /// The path inputs are written to (error messages should name it).
    pub fn input_path(&self) -> &Path {
        &self.input
    }

    /// Write `bytes` to the input file and run the target on it.
    pub fn exec(&mut self, bytes: &[u8]) -> Outcome {
        std::fs::write(&self.input, bytes).expect("writing the fuzz input");
        if let Ok(mut g) = CURRENT.lock() {
            *g = Some((self.input.clone(), self.corpus_dir.clone()));
        }
        take_absurd_alloc();
        self.worker
            .tx
            .send(self.input.clone())
            .expect("the fuzz worker is alive");
        let r = match self.worker.rx.recv_timeout(self.deadline) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                self.worker = Worker::spawn(self.run);
                return Outcome::Hang;
            }
            Err(RecvTimeoutError::Disconnected) => Err("the fuzz worker died".into()),
        };
        if let Some(n) = take_absurd_alloc() {
            return Outcome::AbsurdAlloc(n);
        }
        match r {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => Outcome::Error(e),
            Err(p) => Outcome::Panic(p),
        }
    }

    /// Save a failing input as `tests/fuzz_corpus/<target>/<hash>.bin`; returns its path.
    pub fn save(&self, bytes: &[u8]) -> PathBuf {
        std::fs::create_dir_all(&self.corpus_dir).expect("creating the corpus folder");
        let p = self.corpus_dir.join(format!("{}.bin", short_hash(bytes)));
        std::fs::write(&p, bytes).expect("saving a failing input");
        p
    }
}

/// A campaign's figures for one target.
#[derive(Debug, Default)]
pub struct Stats {
    pub execs: u64,
    pub ok: u64,
    pub errors: u64,
    /// errors whose message does not name the input file
    pub unnamed_errors: u64,
    pub panics: u64,
    pub hangs: u64,
    pub absurd_allocs: u64,
    pub secs: f64,
    /// one line per failure: kind, saved input, message
    pub failures: Vec<String>,
    /// up to three unnamed error messages, for the report
    pub unnamed_examples: Vec<String>,
}

/// How long a campaign runs each target.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    Iterations(u64),
    Seconds(f64),
}

/// How many accepted inputs a campaign keeps to mutate further.
const POOL: usize = 256;

/// Fuzz one target: mutate its seeds, run each input, save every failing one.
pub fn campaign(
    target: &Target,
    corpus_root: &Path,
    budget: Budget,
    seed: u64,
    deadline: Duration,
) -> Stats {
    let mut rng = Rng::new(seed ^ short_hash_u64(target.name.as_bytes()));
    let mut runner = Runner::new(target, corpus_root, deadline);
    let name = runner
        .input_path()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("input")
        .to_string();
    let mut st = Stats::default();
    let t0 = Instant::now();
    // the seeds themselves first: they must load
    let mut queue: Vec<Vec<u8>> = target.seeds.iter().rev().cloned().collect();
    // mutated inputs the reader accepted: mutating them again reaches the layers behind the reader
    // more often than mutating the seeds (a stand-in for coverage feedback, which stable Rust lacks)
    let mut pool: Vec<Vec<u8>> = Vec::new();
    loop {
        let done = match budget {
            Budget::Iterations(n) => st.execs >= n,
            Budget::Seconds(s) => t0.elapsed().as_secs_f64() >= s,
        };
        if done {
            break;
        }
        let (is_seed, input) = match queue.pop() {
            Some(x) => (true, x),
            None => (false, {
                let a = if !pool.is_empty() && rng.chance(2) {
                    rng.pick(&pool).clone()
                } else {
                    rng.pick(&target.seeds).clone()
                };
                let b = rng.pick(&target.seeds).clone();
                mutate(&mut rng, &a, &b, target.text, target.dict)
            }),
        };
        let outcome = runner.exec(&input);
        st.execs += 1;
        match outcome {
            Outcome::Ok => {
                st.ok += 1;
                if !is_seed {
                    if pool.len() < POOL {
                        pool.push(input);
                    } else {
                        let k = rng.below(POOL);
                        pool[k] = input;
                    }
                }
            }
            Outcome::Error(msg) if is_seed => {
                // a seed the reader rejects tests nothing: the harness is broken
                st.errors += 1;
                st.failures
                    .push(format!("seed rejected: {}", one_line(&msg)));
            }
            Outcome::Error(msg) => {
                st.errors += 1;
                if !msg.contains(&name) {
                    st.unnamed_errors += 1;
                    if st.unnamed_examples.len() < 3 {
                        st.unnamed_examples.push(msg);
                    }
                }
            }
            Outcome::Panic(msg) => {
                st.panics += 1;
                let p = runner.save(&input);
                st.failures
                    .push(format!("panic, input {}: {}", p.display(), one_line(&msg)));
            }
            Outcome::AbsurdAlloc(n) => {
                st.absurd_allocs += 1;
                let p = runner.save(&input);
                st.failures.push(format!(
                    "allocation of {n} bytes for a {}-byte input, input {}",
                    input.len(),
                    p.display()
                ));
            }
            Outcome::Hang => {
                st.hangs += 1;
                let p = runner.save(&input);
                st.failures.push(format!(
                    "hang (no answer in {:?}), input {}",
                    deadline,
                    p.display()
                ));
                // the stuck thread keeps a core busy: stop this target here
                break;
            }
        }
    }
    st.secs = t0.elapsed().as_secs_f64();
    st
}

fn short_hash_u64(bytes: &[u8]) -> u64 {
    u64::from_str_radix(&short_hash(bytes), 16).unwrap_or(0)
}

fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Stats {
    pub fn line(&self, name: &str) -> String {
        format!(
            "fuzz {name:<6} {:>8} execs {:>8} errors ({} not naming the file) {:>8} ok {} panics {} hangs {} absurd allocs {:.1} s",
            self.execs,
            self.errors,
            self.unnamed_errors,
            self.ok,
            self.panics,
            self.hangs,
            self.absurd_allocs,
            self.secs
        )
    }
}
