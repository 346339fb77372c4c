//! The whole Fig 4 score set of the spec (`disentanglement.md` §4) in one call, with K20's sample
//! counts multiplied by a `scale`, from any [`LabelledGenerator`]; and [`RowGenerator`], the
//! generator over saved arrays (r, v).
//!
//! ## Sample counts (K20, before `scale`)
//! | metric | counts |
//! |---|---|
//! | BetaVAE | batch 64 (pairs per point), train 10000, eval 5000 points |
//! | FactorVAE | batch 64, train 10000, eval 5000 votes, variance 10000 draws |
//! | MIG | train 100000 |
//! | DCI | train 10000, test 5000 |
//! | Modularity (+ explicitness) | train 100000, test 5000 |
//! | SAP | train 10000, test 5000 |
//! | MCC (Spearman) | 10000 (K20's MCC count) |
//!
//! `scale` multiplies every count but the batches; each scaled count is rounded and kept at least 2.
//! Every metric draws its own fresh sample from the generator, in the order of the table, as
//! disentanglement_lib runs each metric on its own draws. The metrics themselves, and every place
//! where they deviate from disentanglement_lib, are in [`crate::disentangle::scores`]; the report
//! copies those notes.
//!
//! ## What the K = 3 test shows (10 values per factor, r = R·factors + N(0, 0.1²), scale 0.05)
//! With R = Rz(45°) in the plane of factors 0 and 1 (factor 2 untouched), every score ranks
//! identity > rotated > random by more than 0.1 (identity ≈ 1 on BetaVAE, FactorVAE, MIG, DCI-D,
//! modularity; MCC ≈ 0.995; rotated ≈ 2/3, 2/3, 1/3, 0.52, 2/3, 0.80), but for SAP with DL's
//! LinearSVC (identity 0.26, rotated 0.11, random 0.02: its identity is only ≈ 0.2–0.26, so
//! rotated − random ≈ identity/3 stays under 0.1 at any sample size; that margin is 0.04 there).
//! SAP with the nearest class mean ([`SapClassifier::NearestMean`]) keeps the 0.1 margins
//! (0.87, 0.30, 0.005). With K = 2 both factors are rotated and every code-comparing score is at
//! chance at 45° (see `scores`).
//!
//! ## Cross-check (`tools/scores_crosscheck.sh`)
//! On the dumped inputs, MIG, modularity, FactorVAE, MCC and the DCI formulas agree with a
//! numpy/scipy/sklearn recomputation to ≤ 1e-14; SAP (DL's `LinearSVC(C=0.01,
//! class_weight="balanced")`, reimplemented) matches sklearn's accuracies to one test point (K = 3
//! identity and random identical; rotated: one point of 500 flips in one cell, SAP 0.0867 vs
//! 0.0860, as liblinear stops at its tolerance);
//! sklearn `LogisticRegression()` moves BetaVAE by ≤ 0.002 and explicitness by ≤ 0.003, and
//! `GradientBoostingClassifier()` importances move DCI D by ≤ 0.035 on the K = 3 cases but by 0.11
//! on a K = 2, 20°-rotated case (forest 0.015, GBT 0.127).

//! ## Dump
//! With a dump folder, [`all_scores`] writes the exact arrays each metric saw as `.npy` (codes f64,
//! labels int64), so that an external script (`tools/scores_crosscheck.py`) can recompute every
//! metric on the same inputs:
//!
//! | file | shape | what |
//! |---|---|---|
//! | `num_values.npy` | (K) | values per factor |
//! | `betavae_{train,eval}_x.npy`, `betavae_{train,eval}_y.npy` | (n, d), (n) | BetaVAE features and their fixed factor |
//! | `factorvae_{train,eval}_votes.npy` | (n, 2) | per vote: fixed factor, argmin code (index into d) |
//! | `factorvae_global_variance.npy`, `factorvae_active_codes.npy` | (d), (a) | global variances (ddof 1), codes with std ≥ 0.05 |
//! | `mig_r.npy`, `mig_v.npy` | (n, d), (n, K) | MIG sample |
//! | `dci_{train,test}_{r,v}.npy` | | DCI samples |
//! | `modularity_{train,test}_{r,v}.npy` | | modularity (train) and explicitness (train/test) samples |
//! | `sap_{train,test}_{r,v}.npy` | | SAP samples |
//! | `mcc_r.npy`, `mcc_v.npy` | | MCC sample |

use crate::disentangle::mcc::{mcc, Method};
use crate::disentangle::scores::{
    beta_vae_with_points, dci, explicitness, factor_vae_with_votes, mig, modularity, sap_with,
    BetaVaeConfig, BetaVaeScore, DciConfig, DciScore, ExplicitnessScore, FactorVaeConfig,
    FactorVaeScore, Generator, MigScore, ModularityScore, Sample, SapClassifier, SapScore,
};
use crate::io::array::{ArrayData, NdArray};
use crate::io::npy::write_npy;
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// A [`Generator`] that can also return random factor draws with their representations: the
/// sample-based metrics' source.
pub trait LabelledGenerator: Generator {
    /// `n` independent draws: representations (n, d) and their factors (n, K), row-major, factor k
    /// in `0..num_values()[k]`.
    fn draw(&mut self, n: usize) -> Result<(Vec<f64>, Vec<usize>)>;
}

/// The seven Fig 4 metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Metric {
    /// BetaVAE eval accuracy.
    BetaVae,
    /// FactorVAE eval accuracy.
    FactorVae,
    /// Mutual information gap.
    Mig,
    /// DCI disentanglement (completeness and informativeness alongside).
    Dci,
    /// Modularity (explicitness alongside).
    Modularity,
    /// Separated attribute predictability.
    Sap,
    /// Mean correlation coefficient (Spearman).
    Mcc,
}

impl Metric {
    /// All seven, in the report's order.
    pub const ALL: [Metric; 7] = [
        Metric::BetaVae,
        Metric::FactorVae,
        Metric::Mig,
        Metric::Dci,
        Metric::Modularity,
        Metric::Sap,
        Metric::Mcc,
    ];

    /// The metric's name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Metric::BetaVae => "betavae",
            Metric::FactorVae => "factorvae",
            Metric::Mig => "mig",
            Metric::Dci => "dci",
            Metric::Modularity => "modularity",
            Metric::Sap => "sap",
            Metric::Mcc => "mcc",
        }
    }

    /// Parses a name (case and `_`/`-` ignored: `beta_vae`, `BetaVAE`).
    pub fn parse(s: &str) -> Result<Metric> {
        let key: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown metric `{s}` (expected one of: {})",
                    Metric::ALL.map(Metric::name).join(", ")
                ))
            })
    }
}

/// What [`all_scores`] runs.
#[derive(Clone, Debug, Serialize)]
pub struct ScoresConfig {
    /// Multiplies K20's sample counts (not the batches); 1 = the full counts.
    pub scale: f64,
    /// Seed of the metrics' own choices (BetaVAE/FactorVAE factor and value picks, DCI bootstraps);
    /// the generator's draws use the generator's own seed.
    pub seed: u64,
    /// The metrics to run (each at most once; run in [`Metric::ALL`]'s order).
    pub metrics: Vec<Metric>,
    /// Gradient-descent steps of the logistic regressions (BetaVAE, explicitness).
    pub iterations: usize,
    /// Trees per factor of DCI's forest.
    pub dci_trees: usize,
    /// Maximum depth of DCI's trees.
    pub dci_max_depth: usize,
    /// SAP's 1-D classifier (default DL's LinearSVC).
    pub sap_classifier: SapClassifier,
}

impl Default for ScoresConfig {
    fn default() -> Self {
        let b = BetaVaeConfig::default();
        let f = DciConfig::default();
        ScoresConfig {
            scale: 1.0,
            seed: 0,
            metrics: Metric::ALL.to_vec(),
            iterations: b.iterations,
            dci_trees: f.trees,
            dci_max_depth: f.max_depth,
            sap_classifier: SapClassifier::default(),
        }
    }
}

/// The sample counts a report used (after `scale`).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Counts {
    /// BetaVAE pairs per point.
    pub betavae_batch: usize,
    /// BetaVAE training points.
    pub betavae_train: usize,
    /// BetaVAE evaluation points.
    pub betavae_eval: usize,
    /// FactorVAE draws per vote.
    pub factorvae_batch: usize,
    /// FactorVAE training votes.
    pub factorvae_train: usize,
    /// FactorVAE evaluation votes.
    pub factorvae_eval: usize,
    /// FactorVAE draws for the global variances.
    pub factorvae_variance: usize,
    /// MIG sample.
    pub mig_train: usize,
    /// DCI training sample.
    pub dci_train: usize,
    /// DCI test sample.
    pub dci_test: usize,
    /// Modularity (and explicitness) training sample.
    pub modularity_train: usize,
    /// Explicitness test sample.
    pub modularity_test: usize,
    /// SAP training sample.
    pub sap_train: usize,
    /// SAP test sample.
    pub sap_test: usize,
    /// MCC sample.
    pub mcc: usize,
}

impl Counts {
    /// K20's counts times `scale` (rounded, at least 2; the batches stay 64).
    pub fn scaled(scale: f64) -> Result<Counts> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::Invalid(format!(
                "scores: scale must be a positive number, got {scale}"
            )));
        }
        let s = |base: usize| ((base as f64 * scale).round() as usize).max(2);
        Ok(Counts {
            betavae_batch: 64,
            betavae_train: s(10000),
            betavae_eval: s(5000),
            factorvae_batch: 64,
            factorvae_train: s(10000),
            factorvae_eval: s(5000),
            factorvae_variance: s(10000),
            mig_train: s(100000),
            dci_train: s(10000),
            dci_test: s(5000),
            modularity_train: s(100000),
            modularity_test: s(5000),
            sap_train: s(10000),
            sap_test: s(5000),
            mcc: s(10000),
        })
    }
}

/// The MCC part of a report (Spearman).
#[derive(Clone, Debug, Serialize)]
pub struct MccScore {
    /// Mean |ρ| over the matched (code, factor) pairs.
    pub mcc: f64,
    /// Σ |ρ| over the matched pairs divided by K.
    pub mcc_over_factors: f64,
    /// Spearman ρ (d, K) of code i with factor k.
    pub matrix: Vec<Vec<f64>>,
    /// Matched codes.
    pub latent: Vec<usize>,
    /// The factor matched to each entry of `latent`.
    pub factor: Vec<usize>,
}

/// Wall time (seconds) of each metric that ran, sampling included.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Seconds {
    /// BetaVAE.
    pub betavae: Option<f64>,
    /// FactorVAE.
    pub factorvae: Option<f64>,
    /// MIG.
    pub mig: Option<f64>,
    /// DCI.
    pub dci: Option<f64>,
    /// Modularity and explicitness.
    pub modularity: Option<f64>,
    /// SAP.
    pub sap: Option<f64>,
    /// MCC.
    pub mcc: Option<f64>,
}

/// Every score of one [`all_scores`] run, the counts behind them, their wall times and notes.
#[derive(Clone, Debug, Serialize)]
pub struct ScoreReport {
    /// The configuration that ran.
    pub config: ScoresConfig,
    /// Codes d.
    pub d: usize,
    /// Values per factor (K).
    pub num_values: Vec<usize>,
    /// Sample counts used.
    pub counts: Counts,
    /// BetaVAE (score: `eval_accuracy`).
    pub betavae: Option<BetaVaeScore>,
    /// FactorVAE (score: `eval_accuracy`).
    pub factorvae: Option<FactorVaeScore>,
    /// MIG.
    pub mig: Option<MigScore>,
    /// DCI (score: `disentanglement`).
    pub dci: Option<DciScore>,
    /// Modularity.
    pub modularity: Option<ModularityScore>,
    /// Explicitness, run with modularity on its train sample and a test sample.
    pub explicitness: Option<ExplicitnessScore>,
    /// SAP.
    pub sap: Option<SapScore>,
    /// MCC (Spearman).
    pub mcc: Option<MccScore>,
    /// Wall time per metric.
    pub seconds: Seconds,
    /// How this differs from disentanglement_lib / K20 (also in each score's own `notes`).
    pub notes: Vec<String>,
}

impl ScoreReport {
    /// The headline value of each metric that ran, in [`Metric::ALL`]'s order.
    pub fn headline(&self) -> Vec<(Metric, f64)> {
        let mut out = Vec::new();
        let mut push = |m: Metric, v: Option<f64>| {
            if let Some(v) = v {
                out.push((m, v));
            }
        };
        push(
            Metric::BetaVae,
            self.betavae.as_ref().map(|s| s.eval_accuracy),
        );
        push(
            Metric::FactorVae,
            self.factorvae.as_ref().map(|s| s.eval_accuracy),
        );
        push(Metric::Mig, self.mig.as_ref().map(|s| s.mig));
        push(Metric::Dci, self.dci.as_ref().map(|s| s.disentanglement));
        push(
            Metric::Modularity,
            self.modularity.as_ref().map(|s| s.modularity),
        );
        push(Metric::Sap, self.sap.as_ref().map(|s| s.sap));
        push(Metric::Mcc, self.mcc.as_ref().map(|s| s.mcc));
        out
    }

    /// One summary line per metric that ran (score, the secondary values, wall time).
    pub fn summary_lines(&self) -> Vec<String> {
        let t = |x: Option<f64>| x.map_or(String::new(), |s| format!(" ({s:.2} s)"));
        let mut lines = Vec::new();
        let s = &self.seconds;
        if let Some(b) = &self.betavae {
            lines.push(format!(
                "BetaVAE    = {:.4} (train {:.4}){}",
                b.eval_accuracy,
                b.train_accuracy,
                t(s.betavae)
            ));
        }
        if let Some(f) = &self.factorvae {
            lines.push(format!(
                "FactorVAE  = {:.4} (train {:.4}, {} active codes){}",
                f.eval_accuracy,
                f.train_accuracy,
                f.active_codes.len(),
                t(s.factorvae)
            ));
        }
        if let Some(m) = &self.mig {
            lines.push(format!("MIG        = {:.4}{}", m.mig, t(s.mig)));
        }
        if let Some(x) = &self.dci {
            lines.push(format!(
                "DCI        = D {:.4}, C {:.4}, I_test {:.4}{}",
                x.disentanglement,
                x.completeness,
                x.informativeness_test,
                t(s.dci)
            ));
        }
        if let Some(m) = &self.modularity {
            let e = self.explicitness.as_ref().map_or(String::new(), |e| {
                format!(", explicitness {:.4}", e.explicitness_test)
            });
            lines.push(format!(
                "Modularity = {:.4}{e}{}",
                m.modularity,
                t(s.modularity)
            ));
        }
        if let Some(x) = &self.sap {
            lines.push(format!("SAP        = {:.4}{}", x.sap, t(s.sap)));
        }
        if let Some(x) = &self.mcc {
            lines.push(format!("MCC        = {:.4} (Spearman){}", x.mcc, t(s.mcc)));
        }
        lines
    }
}

/// Writes the dump arrays into a folder (nothing when there is none).
struct Dump<'a>(Option<&'a Path>);

impl Dump<'_> {
    fn f64(&self, name: &str, shape: Vec<usize>, x: &[f64]) -> Result<()> {
        match self.0 {
            Some(dir) => write_npy(
                dir.join(format!("{name}.npy")),
                &NdArray::new(shape, ArrayData::F64(x.to_vec()))?,
            ),
            None => Ok(()),
        }
    }

    fn usize(&self, name: &str, shape: Vec<usize>, x: &[usize]) -> Result<()> {
        match self.0 {
            Some(dir) => write_npy(
                dir.join(format!("{name}.npy")),
                &NdArray::new(shape, ArrayData::I64(x.iter().map(|&v| v as i64).collect()))?,
            ),
            None => Ok(()),
        }
    }

    /// A sample's r (n, d) and v (n, K) as `{name}_r.npy` and `{name}_v.npy`.
    fn sample(&self, name: &str, r: &[f64], v: &[usize], d: usize, k: usize) -> Result<()> {
        self.f64(&format!("{name}_r"), vec![r.len() / d, d], r)?;
        self.usize(&format!("{name}_v"), vec![v.len() / k, k], v)
    }
}

/// `g.draw(n)` with its lengths checked.
fn draw_sample(
    g: &mut dyn LabelledGenerator,
    n: usize,
    what: &str,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let (d, k) = (g.dim(), g.num_values().len());
    let (r, v) = g.draw(n)?;
    if r.len() != n * d || v.len() != n * k {
        return Err(Error::Shape {
            what: format!("{what}: generator draw of {n}"),
            expected: format!("{} codes and {} factor values", n * d, n * k),
            got: format!("{} and {}", r.len(), v.len()),
        });
    }
    Ok((r, v))
}

/// Seconds since `t`.
fn since(t: Instant) -> Option<f64> {
    Some(t.elapsed().as_secs_f64())
}

/// Runs the configured metrics on draws from `g` at K20's counts × `cfg.scale` (module doc); with
/// `dump`, writes each metric's exact inputs there as `.npy` (the folder is created).
pub fn all_scores(
    g: &mut dyn LabelledGenerator,
    cfg: &ScoresConfig,
    dump: Option<&Path>,
) -> Result<ScoreReport> {
    let counts = Counts::scaled(cfg.scale)?;
    if cfg.metrics.is_empty() {
        return Err(Error::Invalid("scores: no metric selected".into()));
    }
    if cfg.iterations == 0 || cfg.dci_trees == 0 || cfg.dci_max_depth == 0 {
        return Err(Error::Invalid(format!(
            "scores: iterations, dci_trees and dci_max_depth must be ≥ 1; got {}, {}, {}",
            cfg.iterations, cfg.dci_trees, cfg.dci_max_depth
        )));
    }
    let (d, nv) = (g.dim(), g.num_values().to_vec());
    let k = nv.len();
    if d == 0 || k == 0 {
        return Err(Error::Invalid(format!(
            "scores: the generator has d = {d} codes and K = {k} factors (need ≥ 1 each)"
        )));
    }
    if let Some(dir) = dump {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let dump = Dump(dump);
    dump.usize("num_values", vec![k], &nv)?;
    let on = |m: Metric| cfg.metrics.contains(&m);
    let mut rep = ScoreReport {
        config: cfg.clone(),
        d,
        num_values: nv.clone(),
        counts,
        betavae: None,
        factorvae: None,
        mig: None,
        dci: None,
        modularity: None,
        explicitness: None,
        sap: None,
        mcc: None,
        seconds: Seconds::default(),
        notes: vec![format!(
            "sample counts are K20's × scale = {} (batches stay 64); each metric draws its own sample",
            cfg.scale
        )],
    };
    if on(Metric::BetaVae) {
        let t = Instant::now();
        let bc = BetaVaeConfig {
            batch: counts.betavae_batch,
            train: counts.betavae_train,
            eval: counts.betavae_eval,
            iterations: cfg.iterations,
            c: 1.0,
            seed: cfg.seed,
        };
        let (score, p) = beta_vae_with_points(g, &bc)?;
        dump.f64("betavae_train_x", vec![p.train_y.len(), d], &p.train_x)?;
        dump.usize("betavae_train_y", vec![p.train_y.len()], &p.train_y)?;
        dump.f64("betavae_eval_x", vec![p.eval_y.len(), d], &p.eval_x)?;
        dump.usize("betavae_eval_y", vec![p.eval_y.len()], &p.eval_y)?;
        rep.notes.push(format!("betavae: {}", score.notes));
        rep.betavae = Some(score);
        rep.seconds.betavae = since(t);
    }
    if on(Metric::FactorVae) {
        let t = Instant::now();
        let fc = FactorVaeConfig {
            batch: counts.factorvae_batch,
            train: counts.factorvae_train,
            eval: counts.factorvae_eval,
            variance_samples: counts.factorvae_variance,
            seed: cfg.seed.wrapping_add(1),
        };
        let (score, votes) = factor_vae_with_votes(g, &fc)?;
        let flat =
            |v: &[(usize, usize)]| -> Vec<usize> { v.iter().flat_map(|&(a, b)| [a, b]).collect() };
        dump.usize(
            "factorvae_train_votes",
            vec![votes.train.len(), 2],
            &flat(&votes.train),
        )?;
        dump.usize(
            "factorvae_eval_votes",
            vec![votes.eval.len(), 2],
            &flat(&votes.eval),
        )?;
        dump.f64("factorvae_global_variance", vec![d], &score.global_variance)?;
        dump.usize(
            "factorvae_active_codes",
            vec![score.active_codes.len()],
            &score.active_codes,
        )?;
        rep.notes.push(format!("factorvae: {}", score.notes));
        rep.factorvae = Some(score);
        rep.seconds.factorvae = since(t);
    }
    if on(Metric::Mig) {
        let t = Instant::now();
        let (r, v) = draw_sample(g, counts.mig_train, "mig")?;
        dump.sample("mig", &r, &v, d, k)?;
        rep.mig = Some(mig(&Sample::new(&r, d, &v, &nv)?)?);
        rep.seconds.mig = since(t);
    }
    if on(Metric::Dci) {
        let t = Instant::now();
        let (r1, v1) = draw_sample(g, counts.dci_train, "dci")?;
        let (r2, v2) = draw_sample(g, counts.dci_test, "dci")?;
        dump.sample("dci_train", &r1, &v1, d, k)?;
        dump.sample("dci_test", &r2, &v2, d, k)?;
        let dc = DciConfig {
            trees: cfg.dci_trees,
            max_depth: cfg.dci_max_depth,
            seed: cfg.seed.wrapping_add(2),
        };
        let score = dci(
            &Sample::new(&r1, d, &v1, &nv)?,
            &Sample::new(&r2, d, &v2, &nv)?,
            &dc,
        )?;
        rep.notes.push(format!("dci: {}", score.notes));
        rep.dci = Some(score);
        rep.seconds.dci = since(t);
    }
    if on(Metric::Modularity) {
        let t = Instant::now();
        let (r1, v1) = draw_sample(g, counts.modularity_train, "modularity")?;
        let (r2, v2) = draw_sample(g, counts.modularity_test, "modularity")?;
        dump.sample("modularity_train", &r1, &v1, d, k)?;
        dump.sample("modularity_test", &r2, &v2, d, k)?;
        let (s1, s2) = (
            Sample::new(&r1, d, &v1, &nv)?,
            Sample::new(&r2, d, &v2, &nv)?,
        );
        rep.modularity = Some(modularity(&s1)?);
        let e = explicitness(&s1, &s2, 1.0, cfg.iterations)?;
        rep.notes.push(format!("explicitness: {}", e.notes));
        rep.explicitness = Some(e);
        rep.seconds.modularity = since(t);
    }
    if on(Metric::Sap) {
        let t = Instant::now();
        let (r1, v1) = draw_sample(g, counts.sap_train, "sap")?;
        let (r2, v2) = draw_sample(g, counts.sap_test, "sap")?;
        dump.sample("sap_train", &r1, &v1, d, k)?;
        dump.sample("sap_test", &r2, &v2, d, k)?;
        let score = sap_with(
            &Sample::new(&r1, d, &v1, &nv)?,
            &Sample::new(&r2, d, &v2, &nv)?,
            cfg.sap_classifier,
        )?;
        rep.notes.push(format!("sap: {}", score.notes));
        rep.sap = Some(score);
        rep.seconds.sap = since(t);
    }
    if on(Metric::Mcc) {
        let t = Instant::now();
        let n = counts.mcc;
        let (r, v) = draw_sample(g, n, "mcc")?;
        dump.sample("mcc", &r, &v, d, k)?;
        // Validates the draw as the other metrics do (factor ranges, finite codes).
        Sample::new(&r, d, &v, &nv)?;
        let truth: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        let m = mcc(&r, &truth, n, d, k, Method::Spearman)?;
        rep.mcc = Some(MccScore {
            mcc: m.value,
            mcc_over_factors: m.value_over_truth,
            matrix: m.matrix.chunks(k).map(<[f64]>::to_vec).collect(),
            latent: m.latent,
            factor: m.factor,
        });
        rep.seconds.mcc = since(t);
    }
    Ok(rep)
}

/// A [`LabelledGenerator`] over saved arrays: representations r (n, d) with their factors v (n, K).
/// `sample` with factor k fixed at `value` draws rows uniformly (with replacement) among those with
/// v_k = value; without, and `draw`, uniformly among all rows. This is how disentanglement_lib
/// samples a finite dataset, except that DL matches all K factors of a uniform factor draw exactly
/// (a full grid), where this conditions on the fixed factor only and keeps the data's distribution
/// of the others.
pub struct RowGenerator {
    r: Vec<f64>,
    d: usize,
    v: Vec<usize>,
    num_values: Vec<usize>,
    /// `rows[k][value]`: the rows with v_k = value.
    rows: Vec<Vec<Vec<usize>>>,
    rng: StdRng,
}

impl RowGenerator {
    /// Wraps r (n, d) and v (n, K) (K = `num_values.len()`), checked as [`Sample::new`] checks;
    /// `seed` seeds the row draws.
    pub fn new(
        r: Vec<f64>,
        d: usize,
        v: Vec<usize>,
        num_values: Vec<usize>,
        seed: u64,
    ) -> Result<Self> {
        Sample::new(&r, d, &v, &num_values)?;
        let k = num_values.len();
        let mut rows: Vec<Vec<Vec<usize>>> =
            num_values.iter().map(|&m| vec![Vec::new(); m]).collect();
        for (i, row) in v.chunks(k).enumerate() {
            for (f, &x) in row.iter().enumerate() {
                rows[f][x].push(i);
            }
        }
        Ok(RowGenerator {
            r,
            d,
            v,
            num_values,
            rows,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Number of rows n.
    pub fn n(&self) -> usize {
        self.r.len() / self.d
    }

    /// Appends row i's codes to `out`.
    fn push_row(&self, i: usize, out: &mut Vec<f64>) {
        out.extend_from_slice(&self.r[i * self.d..(i + 1) * self.d]);
    }
}

impl Generator for RowGenerator {
    fn num_values(&self) -> &[usize] {
        &self.num_values
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn sample(&mut self, fixed: Option<(usize, usize)>, batch: usize) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(batch * self.d);
        match fixed {
            Some((k, value)) => {
                let pool = self
                    .rows
                    .get(k)
                    .and_then(|r| r.get(value))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "scores: no row has factor {k} = {value} (factor {k} takes 0..{}); \
                             pass --num-values to match the values present, or supply rows for it",
                            self.num_values.get(k).copied().unwrap_or(0)
                        ))
                    })?;
                let picks: Vec<usize> = (0..batch)
                    .map(|_| pool[self.rng.random_range(0..pool.len())])
                    .collect();
                picks.into_iter().for_each(|i| self.push_row(i, &mut out));
            }
            None => {
                let n = self.n();
                for _ in 0..batch {
                    let i = self.rng.random_range(0..n);
                    self.push_row(i, &mut out);
                }
            }
        }
        Ok(out)
    }
}

impl LabelledGenerator for RowGenerator {
    fn draw(&mut self, n: usize) -> Result<(Vec<f64>, Vec<usize>)> {
        let (rows, k) = (self.n(), self.num_values.len());
        let (mut r, mut v) = (Vec::with_capacity(n * self.d), Vec::with_capacity(n * k));
        for _ in 0..n {
            let i = self.rng.random_range(0..rows);
            self.push_row(i, &mut r);
            v.extend_from_slice(&self.v[i * k..(i + 1) * k]);
        }
        Ok((r, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    /// Factors K and values per factor of the ranking test.
    const K: usize = 3;
    const M: usize = 10;
    /// Noise std of the synthetic codes (factor spacing 1).
    const NOISE: f64 = 0.1;

    /// The representations of the ranking test.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Kind {
        /// r = factors + noise.
        Identity,
        /// r = Rz(45°)·factors + noise: factors 0 and 1 rotated in their plane, factor 2 untouched.
        Rotated45,
        /// r independent of the factors, N(0, 3²) per code.
        Random,
    }

    /// Uniform factors on a 10×10×10 grid, encoded as `kind` says.
    struct Synth3 {
        kind: Kind,
        rng: StdRng,
    }

    impl Synth3 {
        fn encode(&mut self, f: [usize; K], out: &mut Vec<f64>) {
            let e: [f64; K] = std::array::from_fn(|_| {
                NOISE * {
                    let g: f64 = StandardNormal.sample(&mut self.rng);
                    g
                }
            });
            let x = f.map(|v| v as f64);
            let s = std::f64::consts::FRAC_1_SQRT_2;
            match self.kind {
                Kind::Identity => out.extend([x[0] + e[0], x[1] + e[1], x[2] + e[2]]),
                Kind::Rotated45 => out.extend([
                    s * x[0] - s * x[1] + e[0],
                    s * x[0] + s * x[1] + e[1],
                    x[2] + e[2],
                ]),
                Kind::Random => out.extend(e.map(|v| 30.0 * v)),
            }
        }

        fn factors(&mut self) -> [usize; K] {
            std::array::from_fn(|_| self.rng.random_range(0..M))
        }
    }

    impl Generator for Synth3 {
        fn num_values(&self) -> &[usize] {
            &[M; K]
        }
        fn dim(&self) -> usize {
            K
        }
        fn sample(&mut self, fixed: Option<(usize, usize)>, batch: usize) -> Result<Vec<f64>> {
            let mut r = Vec::with_capacity(K * batch);
            for _ in 0..batch {
                let mut f = self.factors();
                if let Some((k, value)) = fixed {
                    f[k] = value;
                }
                self.encode(f, &mut r);
            }
            Ok(r)
        }
    }

    impl LabelledGenerator for Synth3 {
        fn draw(&mut self, n: usize) -> Result<(Vec<f64>, Vec<usize>)> {
            let (mut r, mut v) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let f = self.factors();
                self.encode(f, &mut r);
                v.extend(f);
            }
            Ok((r, v))
        }
    }

    /// The spec's must-show, restated for K = 3 (a 45° rotation of two of three equal-scale factors;
    /// with K = 2 every code-comparing score is at chance at 45° by symmetry, see `scores`): every
    /// score ranks identity > rotated > random by a margin, and the identity reaches 0.95 on
    /// BetaVAE, FactorVAE, MIG, DCI-D and modularity.
    #[test]
    fn k3_ranks_identity_rotated_random() {
        let cfg = ScoresConfig {
            scale: 0.05,
            iterations: 500,
            ..ScoresConfig::default()
        };
        let kinds = [Kind::Identity, Kind::Rotated45, Kind::Random];
        let reports: Vec<ScoreReport> = kinds
            .iter()
            .map(|&kind| {
                let mut g = Synth3 {
                    kind,
                    rng: StdRng::seed_from_u64(11),
                };
                all_scores(&mut g, &cfg, None).unwrap()
            })
            .collect();
        let table: Vec<Vec<(Metric, f64)>> = reports.iter().map(ScoreReport::headline).collect();
        println!("metric      identity  rotated45  random");
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert!(table.iter().all(|t| t[i].0 == *m), "{table:?}");
            println!(
                "{:<10} {:>9.4} {:>10.4} {:>7.4}",
                m.name(),
                table[0][i].1,
                table[1][i].1,
                table[2][i].1
            );
        }
        // Expected at 45° (by symmetry, codes 0 and 1 are interchangeable for factors 0 and 1, code 2
        // is factor 2): BetaVAE and FactorVAE ≈ 2/3 (chance 1/3 is random), MIG ≈ 1/3, modularity
        // ≈ (½ + ½ + 1)/3, SAP ≈ 0.9/3, MCC ≈ (2·0.707·0.995 + 0.995)/3 ≈ 0.80, DCI D between the
        // split codes' 1 − log 2/log 3 = 0.37 and 1. Random: chance (≈ 0 for the gaps, 1/3 for the
        // accuracies, ≈ 0.1–0.25 for modularity). The smallest expected gap is MCC's 1 − 0.80; a
        // margin of 0.1 is several times the spread over seeds at these counts.
        // SAP with DL's LinearSVC is the exception: its identity is ≈ 0.2–0.26 (one-vs-rest lines
        // on one code win for few of the 10 classes), so rotated ≈ identity/3 (only factor 2 keeps
        // its gap) and rotated − random ≈ 0.07–0.09 < 0.1 at any sample size (sklearn on the
        // cross-check's 20000-point cases: 0.214, 0.090, 0.007; here 0.2587, 0.1107, 0.0227). Its
        // rotated-vs-random margin is 0.04 (about half the expected gap); the 0.1 bars are kept
        // for the nearest-class-mean SAP below.
        for (i, m) in Metric::ALL.iter().enumerate() {
            let (id, rot, rnd) = (table[0][i].1, table[1][i].1, table[2][i].1);
            let margin = if *m == Metric::Sap { 0.04 } else { 0.1 };
            assert!(
                id > rot + 0.1 && rot > rnd + margin,
                "{}: identity {id:.4}, rotated {rot:.4}, random {rnd:.4}",
                m.name()
            );
        }
        let nearest_mean = ScoresConfig {
            metrics: vec![Metric::Sap],
            sap_classifier: SapClassifier::NearestMean,
            ..cfg
        };
        let sap_nm: Vec<f64> = kinds
            .iter()
            .map(|&kind| {
                let mut g = Synth3 {
                    kind,
                    rng: StdRng::seed_from_u64(11),
                };
                let rep = all_scores(&mut g, &nearest_mean, None).unwrap();
                rep.sap.map_or(f64::NAN, |s| s.sap)
            })
            .collect();
        println!("sap (nearest mean) {sap_nm:.4?}");
        assert!(
            sap_nm[0] > sap_nm[1] + 0.1 && sap_nm[1] > sap_nm[2] + 0.1,
            "sap (nearest mean): {sap_nm:?}"
        );
        for m in [
            Metric::BetaVae,
            Metric::FactorVae,
            Metric::Mig,
            Metric::Dci,
            Metric::Modularity,
        ] {
            let id = table[0][m as usize].1;
            assert!(id >= 0.95, "{}: identity {id:.4} < 0.95", m.name());
        }
    }

    #[test]
    fn counts_scale_and_floor() {
        let c = Counts::scaled(0.1).unwrap();
        assert_eq!(
            (
                c.betavae_train,
                c.factorvae_variance,
                c.mig_train,
                c.modularity_test,
                c.mcc
            ),
            (1000, 1000, 10000, 500, 1000)
        );
        assert_eq!(c.betavae_batch, 64);
        let c = Counts::scaled(1e-9).unwrap();
        assert_eq!((c.mig_train, c.sap_test), (2, 2));
        assert!(Counts::scaled(0.0).is_err() && Counts::scaled(f64::NAN).is_err());
    }

    #[test]
    fn metric_names_parse() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()).unwrap(), m);
        }
        assert_eq!(Metric::parse("Beta_VAE").unwrap(), Metric::BetaVae);
        assert!(Metric::parse("fid").is_err());
    }

    #[test]
    fn row_generator_conditions_on_the_fixed_factor() {
        // 6 rows, K = 2: factor 0 = row % 2, factor 1 = row % 3; code = row index.
        let v: Vec<usize> = (0..6).flat_map(|i| [i % 2, i % 3]).collect();
        let r: Vec<f64> = (0..6).map(|i| i as f64).collect();
        let mut g = RowGenerator::new(r, 1, v, vec![2, 4], 3).unwrap();
        let x = g.sample(Some((1, 2)), 200).unwrap();
        assert!(x.iter().all(|&c| c == 2.0 || c == 5.0), "{x:?}");
        assert!(x.contains(&2.0) && x.contains(&5.0));
        let x = g.sample(Some((0, 1)), 200).unwrap();
        assert!(x.iter().all(|&c| [1.0, 3.0, 5.0].contains(&c)));
        // Value 3 of factor 1 is declared but absent: an error naming it.
        let e = g.sample(Some((1, 3)), 1).unwrap_err().to_string();
        assert!(e.contains("factor 1 = 3"), "{e}");
        let (r, v) = g.draw(300).unwrap();
        assert_eq!((r.len(), v.len()), (300, 600));
        for (c, f) in r.iter().zip(v.chunks(2)) {
            let i = *c as usize;
            assert_eq!(f, [i % 2, i % 3]);
        }
        let mut seen = [false; 6];
        r.iter().for_each(|&c| seen[c as usize] = true);
        assert!(seen.iter().all(|&s| s));
        assert!(RowGenerator::new(vec![0.0; 2], 1, vec![0, 5], vec![2, 4], 0).is_err());
    }

    #[test]
    fn dump_writes_every_metric_input() {
        let dir =
            std::env::temp_dir().join(format!("cryofield-scores-dump-{}", std::process::id()));
        let cfg = ScoresConfig {
            scale: 0.002,
            iterations: 20,
            dci_trees: 2,
            ..ScoresConfig::default()
        };
        let mut g = Synth3 {
            kind: Kind::Identity,
            rng: StdRng::seed_from_u64(1),
        };
        let rep = all_scores(&mut g, &cfg, Some(&dir)).unwrap();
        let c = rep.counts;
        let read = |name: &str| crate::io::npy::read_npy(dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!(read("mig_r").shape, vec![c.mig_train, K]);
        assert_eq!(read("mig_v").shape, vec![c.mig_train, K]);
        assert_eq!(read("betavae_eval_x").shape, vec![c.betavae_eval, K]);
        assert_eq!(
            read("factorvae_train_votes").shape,
            vec![c.factorvae_train, 2]
        );
        assert_eq!(read("modularity_test_r").shape, vec![c.modularity_test, K]);
        for name in [
            "num_values",
            "betavae_train_x",
            "betavae_train_y",
            "betavae_eval_y",
            "factorvae_eval_votes",
            "factorvae_global_variance",
            "factorvae_active_codes",
            "dci_train_r",
            "dci_test_v",
            "modularity_train_v",
            "sap_train_r",
            "sap_test_v",
            "mcc_r",
            "mcc_v",
        ] {
            assert!(dir.join(format!("{name}.npy")).is_file(), "{name}");
        }
        // The dumped MIG sample reproduces the reported MIG.
        let (r, v) = (read("mig_r").to_f64(), read("mig_v").to_i64().unwrap());
        let v: Vec<usize> = v.iter().map(|&x| x as usize).collect();
        let nv = [M; K];
        let again = mig(&Sample::new(&r, K, &v, &nv).unwrap()).unwrap().mig;
        assert_eq!(again, rep.mig.as_ref().unwrap().mig);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
