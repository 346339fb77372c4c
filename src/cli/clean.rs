//! `clean`: remove the per-epoch outputs of training runs except every Nth epoch, as cryoDRGN's
//! `clean`. In each training output folder, a file is removed when (all of):
//!
//! - it is a regular file directly in the folder (never a folder, a link, or anything deeper),
//!   named `weights.E…`, `z.E…`, `pose.E…` or `reconstruct.E…` with `E` an epoch number (the
//!   part of the name between the first and the second dot, all digits: `weights.7.pkl`,
//!   `weights.7.safetensors`, `z.7.pkl`, `reconstruct.7.mrc`);
//! - `E` is not a multiple of `-n` (default 5);
//! - there is no analysis folder for `E` (`analyze.E`, or, ours, `landscape.E`);
//! - `E` is not the run's latest epoch (the highest `E` of any such file; ours).
//!
//! Nothing else is ever removed: unnumbered files (`weights.pkl`, `z.pkl`, `config.yaml`, logs)
//! and every subfolder are left as they are. `--dry-run` only counts (and with `-v` lists) what
//! would go.
//!
//! Folders are given as paths or glob patterns (`*`, `?`, and `**` for any depth, relative to
//! the current folder; quote them so the shell leaves them alone); none means the current
//! folder. A pattern or list matching several folders checks each for a training config, asks
//! before cleaning each (`s`/`skip` skips), and skips folders inside one already handled; `-f`
//! cleans without asking when there are at most 10 folders, `-ff` up to 100, and so on (as the
//! reference's).
//!
//! Deviations from the reference, both for safety: every folder, even a single one or the current
//! folder, must hold a training config (`config.yaml`, `config.yml`, `configs.yaml`,
//! `configs.yml`, or ours, `config.json`) or it is left alone; and the latest epoch and epochs
//! with a `landscape.E` folder are kept as well.
//!
//! Example: `cryofield clean out/ -n 10 --dry-run`

use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Remove extraneous per-epoch outputs.
#[derive(Debug, clap::Args)]
#[command(about = "Remove per-epoch outputs of training runs, keeping every Nth epoch")]
pub struct Args {
    /// Training output folders or glob patterns (default: the current folder)
    pub outglobs: Vec<String>,
    /// Keep the outputs of every this many epochs
    #[arg(short = 'n', long = "every-n-epochs", default_value_t = 5)]
    pub every_n_epochs: u64,
    /// Clean without asking (repeat for more than 10, 100, … folders)
    #[arg(short = 'f', long, action = clap::ArgAction::Count)]
    pub force: u8,
    /// Print more: folders that are not training outputs, each file removed
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only count what would be removed
    #[arg(short = 'd', long = "dry-run")]
    pub dry_run: bool,
}

/// The per-epoch output kinds that may be removed.
const KINDS: [&str; 4] = ["weights", "z", "pose", "reconstruct"];

/// The epoch of a per-epoch output file name (`weights.7.pkl` → 7), or `None` for any other name.
pub fn epoch_of_name(name: &str) -> Option<u64> {
    let mut parts = name.splitn(3, '.');
    let kind = parts.next()?;
    let epoch = parts.next()?;
    if !KINDS.contains(&kind) || epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    epoch.parse().ok()
}

/// The epoch of an analysis folder name (`analyze.7`, `landscape.7` → 7).
fn analysis_epoch(name: &str) -> Option<u64> {
    let (kind, rest) = name.split_once('.')?;
    if kind != "analyze" && kind != "landscape" {
        return None;
    }
    let e = rest.split('.').next()?;
    if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    e.parse().ok()
}

/// What cleaning a folder removes (or would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// files to remove, sorted
    pub remove: Vec<PathBuf>,
    /// per-epoch files kept
    pub kept: usize,
}

/// The per-epoch files of `dir` to remove when keeping every `every`-th epoch (see the module
/// doc). Reads the folder only.
pub fn plan_clean(dir: &Path, every: u64) -> anyhow::Result<Plan> {
    if every == 0 {
        bail!("--every-n-epochs must be at least 1");
    }
    let mut analysed = BTreeSet::new();
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading folder {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading folder {}", dir.display()))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        // the entry itself, not what a link points to
        let ft = e
            .file_type()
            .with_context(|| format!("reading {}", e.path().display()))?;
        if ft.is_dir() {
            if let Some(ep) = analysis_epoch(&name) {
                analysed.insert(ep);
            }
        } else if ft.is_file() {
            if let Some(ep) = epoch_of_name(&name) {
                files.push((e.path(), ep));
            }
        }
    }
    let latest = files.iter().map(|f| f.1).max();
    let mut remove: Vec<PathBuf> = files
        .iter()
        .filter(|(_, ep)| ep % every != 0 && !analysed.contains(ep) && Some(*ep) != latest)
        .map(|(p, _)| p.clone())
        .collect();
    remove.sort();
    let kept = files.len() - remove.len();
    Ok(Plan { remove, kept })
}

/// The training config of `dir`, if it holds one.
pub fn config_file(dir: &Path) -> Option<PathBuf> {
    [
        "config.yaml",
        "config.yml",
        "configs.yaml",
        "configs.yml",
        "config.json",
    ]
    .iter()
    .map(|n| dir.join(n))
    .find(|p| p.is_file())
}

/// Cleans one folder (or counts, with `--dry-run`), printing a summary line.
fn clean_dir(dir: &Path, a: &Args) -> anyhow::Result<usize> {
    let plan = plan_clean(dir, a.every_n_epochs)?;
    for p in &plan.remove {
        if a.verbose > 0 {
            println!(
                "\t{} {}",
                if a.dry_run {
                    "would remove"
                } else {
                    "removing"
                },
                p.display()
            );
        }
        if !a.dry_run {
            std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let k = plan.remove.len();
    if a.dry_run {
        println!(
            "\tWould remove {k} files! ({} per-epoch files kept)",
            plan.kept
        );
    } else {
        println!("\tRemoved {k} files! ({} per-epoch files kept)", plan.kept);
    }
    Ok(k)
}

/// Whether `name` matches the glob component `pat` (`*` any run, `?` one character).
fn component_matches(pat: &[char], name: &[char]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            component_matches(&pat[1..], name)
                || (!name.is_empty() && component_matches(pat, &name[1..]))
        }
        (Some('?'), Some(_)) => component_matches(&pat[1..], &name[1..]),
        (Some(p), Some(c)) if p == c => component_matches(&pat[1..], &name[1..]),
        _ => false,
    }
}

/// The folders matching the glob `pattern` (components split on `/`; `*`, `?`, `**`), sorted.
/// Hidden entries match only a component that starts with a dot.
pub fn glob_dirs(pattern: &str) -> Vec<PathBuf> {
    let absolute = pattern.starts_with('/');
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let root = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let mut out = BTreeSet::new();
    walk(&root, &comps, &mut out);
    out.into_iter().collect()
}

fn subdirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let read = if dir.as_os_str().is_empty() {
        std::fs::read_dir(".")
    } else {
        std::fs::read_dir(dir)
    };
    let Ok(rd) = read else { return Vec::new() };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        let p = dir.join(&name);
        p.is_dir().then_some((name, p))
    })
    .collect()
}

fn walk(dir: &Path, comps: &[&str], out: &mut BTreeSet<PathBuf>) {
    let Some((&c, rest)) = comps.split_first() else {
        if !dir.as_os_str().is_empty() && dir.is_dir() {
            out.insert(dir.to_path_buf());
        }
        return;
    };
    if c == "**" {
        // zero directories, or one more level and stay on `**`
        walk(dir, rest, out);
        for (name, p) in subdirs(dir) {
            if !name.starts_with('.') {
                walk(&p, comps, out);
            }
        }
        return;
    }
    if !c.contains(['*', '?']) {
        walk(&dir.join(c), rest, out);
        return;
    }
    let pat: Vec<char> = c.chars().collect();
    for (name, p) in subdirs(dir) {
        if name.starts_with('.') && !c.starts_with('.') {
            continue;
        }
        let chars: Vec<char> = name.chars().collect();
        if component_matches(&pat, &chars) {
            walk(&p, rest, out);
        }
    }
}

/// Asks whether to clean `dir`; anything but `s`/`skip` (or end of input) means yes.
fn ask(dir: &Path) -> anyhow::Result<bool> {
    print!(
        "`{}` is a training output folder, enter 1) \"(s)kip\" or 2) any other key to clean: ",
        dir.display()
    );
    std::io::stdout().flush().ok();
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line)?;
    if n == 0 {
        println!("(no input: skipped)");
        return Ok(false);
    }
    Ok(!matches!(line.trim(), "s" | "skip"))
}

/// Cleans one folder given alone: it must be a training output folder.
fn clean_single(dir: &Path, a: &Args) -> anyhow::Result<()> {
    if config_file(dir).is_none() {
        println!(
            "`{}` is not a training output folder (no config.yaml or config.json): left alone",
            dir.display()
        );
        return Ok(());
    }
    println!("`{}`", dir.display());
    clean_dir(dir, a)?;
    Ok(())
}

/// Run `clean`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.every_n_epochs == 0 {
        bail!("--every-n-epochs must be at least 1");
    }
    if a.outglobs.is_empty() {
        let cwd = std::env::current_dir().context("reading the current folder")?;
        return clean_single(&cwd, &a);
    }
    for pattern in &a.outglobs {
        let mut dirs = glob_dirs(pattern);
        if dirs.is_empty() {
            println!("no folder matches `{pattern}`");
            continue;
        }
        if dirs.len() == 1 {
            clean_single(&dirs[0], &a)?;
            continue;
        }
        println!("Found {} directories matching {pattern}", dirs.len());
        let mut force = a.force > 0;
        if force && dirs.len() as f64 > 10f64.powi(a.force as i32) {
            let fs = "f".repeat((dirs.len() as f64).log10() as usize + 1);
            println!(
                "Reverting to interactivity — use -{fs} to disable interactivity in this case!"
            );
            force = false;
        }
        let width = dirs
            .iter()
            .map(|d| d.display().to_string().len())
            .max()
            .unwrap_or(0);
        while !dirs.is_empty() {
            let dir = dirs.remove(0);
            let is_run = config_file(&dir).is_some();
            let shown = format!("`{}`", dir.display());
            if is_run && (a.dry_run || force) {
                println!("{shown:.<w$}is a training output folder", w = width + 7);
            } else if !is_run && a.verbose > 0 {
                println!("{shown:.<w$}is not a training output folder", w = width + 7);
            }
            if !is_run {
                continue;
            }
            if a.dry_run || force || ask(&dir)? {
                clean_dir(&dir, &a)?;
            }
            // folders inside a training output folder are not scanned
            dirs.retain(|p| !p.starts_with(&dir));
        }
    }
    Ok(())
}
