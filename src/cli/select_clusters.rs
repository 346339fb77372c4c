//! `select-clusters`: the indices of the particles whose k-means label is one of `--sel`
//! (cryoDRGN's `select_clusters`), from `analyze`'s `kmeans{K}/labels.pkl`, as an index .pkl
//! (int64, 0-based, ascending), written atomically.
//!
//! `--sel` counts clusters from 1, as cryoDRGN 4.3 and `analyze` number them (`--sel 1` is the
//! cluster of `vol_001.mrc`, stored as label 0 in labels.pkl); 0 or a negative id is an error.

//! When the model was trained on a subset (`--ind`), `--parent-ind` gives that index .pkl so the
//! output indexes the original stack: position `i` of the labels is particle `parent[i]`
//! (`--N-orig`, the original stack's size, checks the parent's indices).
//!
//! Example: `cryofield select-clusters out/analyze.20/kmeans20/labels.pkl --sel 1 4 -o ind.pkl`

use crate::meta::{load_indices, load_int_array, save_indices};
use anyhow::bail;
use std::path::PathBuf;

/// Select particles by k-means cluster.
#[derive(Debug, clap::Args)]
#[command(about = "Indices of the particles in the chosen k-means clusters (ids from 1)")]
pub struct Args {
    /// k-means labels (labels.pkl from analyze)
    pub labels: PathBuf,
    /// Cluster ids to keep, from 1 (as analyze's vol_001.mrc; labels.pkl stores id − 1)
    #[arg(long, required = true, num_args = 1..)]
    pub sel: Vec<i64>,
    /// Output index .pkl
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Index .pkl the model was trained on (maps the selection to the original stack)
    #[arg(long = "parent-ind")]
    pub parent_ind: Option<PathBuf>,
    /// Number of particles of the original stack (checks --parent-ind)
    #[arg(long = "N-orig", requires = "parent_ind")]
    pub n_orig: Option<usize>,
}

/// Positions `i` of `labels` with `labels[i]` in `sel`, ascending.
pub fn select_labels(labels: &[i64], sel: &[i64]) -> Vec<usize> {
    labels
        .iter()
        .enumerate()
        .filter(|(_, l)| sel.contains(l))
        .map(|(i, _)| i)
        .collect()
}

/// `--sel` ids count from 1 (as analyze's `vol_001.mrc` and cryoDRGN 4.3's): 0 or a negative id
/// is an error.
pub fn check_cluster_ids(sel: &[i64]) -> anyhow::Result<()> {
    if let Some(s) = sel.iter().find(|&&s| s < 1) {
        bail!("--sel {s}: cluster ids count from 1 (as analyze's vol_001.mrc and cryoDRGN 4.3's)");
    }
    Ok(())
}

/// Run `select-clusters`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (shape, labels) = load_int_array(&a.labels, "cluster labels")?;
    if shape.len() != 1 {
        bail!(
            "{}: cluster labels: expected a 1-D array, found shape {shape:?}",
            a.labels.display()
        );
    }
    check_cluster_ids(&a.sel)?;
    // ids from 1 → the labels stored (from 0)
    let sel: Vec<i64> = a.sel.iter().map(|s| s - 1).collect();
    let present = |s: &i64| labels.contains(s);
    if let Some(s) = sel.iter().find(|s| !present(s)) {
        let mut have: Vec<i64> = labels.iter().map(|l| l + 1).collect();
        have.sort_unstable();
        have.dedup();
        eprintln!(
            "warning: no particle of {} is in cluster {} (clusters present, from 1: {have:?})",
            a.labels.display(),
            s + 1
        );
    }
    let mut ind = select_labels(&labels, &sel);
    if ind.is_empty() {
        bail!(
            "{}: no particle is in clusters {:?} (counted from 1); nothing written",
            a.labels.display(),
            a.sel
        );
    }
    eprintln!(
        "selected {} of {} particles (clusters {:?})",
        ind.len(),
        labels.len(),
        a.sel
    );
    if let Some(p) = &a.parent_ind {
        let parent = load_indices(p, a.n_orig.unwrap_or(usize::MAX))?;
        if parent.len() != labels.len() {
            bail!(
                "{}: {} indices, but {} labels a subset of {} particles",
                p.display(),
                parent.len(),
                a.labels.display(),
                labels.len()
            );
        }
        ind = ind.iter().map(|&i| parent[i]).collect();
    }
    save_indices(&a.o, &ind)?;
    eprintln!("wrote {}", a.o.display());
    Ok(())
}
