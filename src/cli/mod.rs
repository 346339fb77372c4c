//! Subcommands of the `cryofield` binary: one module per subcommand, each module's doc is its `--help`.
//! Names are kebab-case; the reference's snake_case names are accepted as aliases.

pub mod abinit_ai;
pub mod abinit_het;
pub mod abinit_homo;
pub mod analyze;
pub mod analyze_convergence;
pub mod analyze_landscape;
pub mod analyze_landscape_full;
pub mod backproject_voxel;
pub mod clean;
pub mod concat_pkls;
pub mod demo;
pub mod direct_traversal;
pub mod disentangle;
pub mod disentangle_interventions;
pub mod disentangle_plots;
pub mod disentangle_rot90;
pub mod disentangle_scores;
pub mod downsample;
pub mod eval_accuracy;
pub mod eval_images;
pub mod eval_vol;
pub mod export;
pub mod filter;
pub mod filter_latent;
pub mod filter_pkl;
pub mod fsc;
pub mod gen_mask;
pub mod graph_traversal;
pub mod info;
pub mod isometry;
pub mod kl_kliep;
pub mod parse_ctf;
pub mod parse_pose;
pub mod parse_star;
pub mod pathway;
pub mod pc_eval;
pub mod pc_gen_metrics;
pub mod pc_observe;
pub mod pc_prepare;
pub mod pc_reconstruct;
pub mod pc_sample;
pub mod pc_train;
pub mod pc_traversal;
pub mod pdb2mrc;
pub mod phantom;
pub mod phase_flip;
pub mod plot_classes;
pub mod plot_fsc;
pub mod pose_error;
pub mod pose_search;
pub mod prior_eval;
pub mod prior_interpolate;
pub mod prior_langevin;
pub mod prior_sample;
pub mod prior_train;
pub mod progress;
pub mod select_clusters;
pub mod select_random;
pub mod simulate;
pub mod train_dec;
pub mod train_nn;
pub mod train_twin;
pub mod train_vae;
pub mod translate_mrcs;
pub mod twin_analyze;
pub mod view_cs_header;
pub mod view_header;
pub mod view_mrcs;
pub mod vol_edit;
pub mod write_cs;
pub mod write_star;

use clap::{Parser, Subcommand};

/// cryofield: heterogeneous cryo-EM reconstruction (cryoDRGN-compatible), fast on CPU and GPU.
#[derive(Debug, Parser)]
#[command(name = "cryofield", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    Demo(demo::Args),
    Downsample(downsample::Args),
    #[command(alias = "parse_pose_star")]
    ParsePoseStar(parse_pose::StarArgs),
    #[command(alias = "parse_pose_csparc")]
    ParsePoseCsparc(parse_pose::CsArgs),
    #[command(alias = "parse_ctf_star")]
    ParseCtfStar(parse_ctf::StarArgs),
    #[command(alias = "parse_ctf_csparc")]
    ParseCtfCsparc(parse_ctf::CsArgs),
    #[command(alias = "parse_star")]
    ParseStar(parse_star::Args),
    #[command(alias = "view_header")]
    ViewHeader(view_header::Args),
    Info(info::Args),
    Fsc(fsc::Args),
    Simulate(simulate::Args),
    Phantom(phantom::Args),
    #[command(alias = "eval_vol")]
    EvalVol(eval_vol::Args),
    #[command(alias = "eval_images")]
    EvalImages(eval_images::Args),
    Analyze(analyze::Args),
    #[command(alias = "analyze_landscape")]
    AnalyzeLandscape(analyze_landscape::Args),
    #[command(alias = "eval_accuracy")]
    EvalAccuracy(eval_accuracy::Args),
    #[command(alias = "train_nn")]
    TrainNn(train_nn::Args),
    #[command(alias = "train_vae")]
    TrainVae(train_vae::Args),
    #[command(alias = "train_twin")]
    TrainTwin(train_twin::Args),
    #[command(alias = "pc_traversal")]
    PcTraversal(pc_traversal::Args),
    #[command(alias = "graph_traversal")]
    GraphTraversal(graph_traversal::Args),
    #[command(alias = "direct_traversal")]
    DirectTraversal(direct_traversal::Args),
    Pdb2mrc(pdb2mrc::Args),
    #[command(alias = "pose_search")]
    PoseSearch(pose_search::Args),
    #[command(alias = "pose_error")]
    PoseError(pose_error::Args),
    PcTrain(pc_train::Args),
    PcSample(pc_sample::Args),
    PriorTrain(prior_train::Args),
    PriorSample(prior_sample::Args),
    PriorInterpolate(prior_interpolate::Args),
    PriorLangevin(prior_langevin::Args),
    PriorEval(prior_eval::Args),
    #[command(alias = "kl_kliep")]
    KlKliep(kl_kliep::Args),
    Isometry(isometry::Args),
    Disentangle(disentangle::Args),
    PcReconstruct(pc_reconstruct::Args),
    Pathway(pathway::Args),
    #[command(alias = "twin_analyze")]
    TwinAnalyze(twin_analyze::Args),
    Abinit(abinit_ai::Args),
    #[command(alias = "train_dec")]
    TrainDec(train_dec::Args),
    #[command(alias = "abinit_homo", alias = "abinit_homo_old")]
    AbinitHomo(abinit_homo::Args),
    #[command(alias = "abinit_het", alias = "abinit_het_old")]
    AbinitHet(abinit_het::Args),
    #[command(alias = "backproject_voxel")]
    BackprojectVoxel(backproject_voxel::Args),
    #[command(alias = "filter_mrcs")]
    FilterMrcs(filter::MrcsArgs),
    #[command(alias = "filter_star")]
    FilterStar(filter::StarArgs),
    PcPrepare(pc_prepare::Args),
    PcObserve(pc_observe::Args),
    PcEval(pc_eval::Args),
    PcGenMetrics(pc_gen_metrics::Args),
    #[command(alias = "gen_mask")]
    GenMask(gen_mask::Args),
    #[command(alias = "flip_hand")]
    FlipHand(vol_edit::FlipArgs),
    #[command(alias = "invert_contrast")]
    InvertContrast(vol_edit::InvertArgs),
    #[command(alias = "add_psize")]
    AddPsize(vol_edit::PsizeArgs),
    #[command(alias = "plot_fsc")]
    PlotFsc(plot_fsc::Args),
    #[command(alias = "view_cs_header")]
    ViewCsHeader(view_cs_header::Args),
    #[command(alias = "select_clusters")]
    SelectClusters(select_clusters::Args),
    #[command(alias = "filter_pkl")]
    FilterPkl(filter_pkl::Args),
    #[command(alias = "concat_pkls")]
    ConcatPkls(concat_pkls::Args),
    #[command(alias = "select_random")]
    SelectRandom(select_random::Args),
    Filter(filter_latent::Args),
    #[command(alias = "write_star")]
    WriteStar(write_star::Args),
    #[command(alias = "write_cs")]
    WriteCs(write_cs::Args),
    #[command(alias = "filter_cs")]
    FilterCs(write_cs::FilterArgs),
    #[command(alias = "phase_flip")]
    PhaseFlip(phase_flip::Args),
    #[command(alias = "translate_mrcs")]
    TranslateMrcs(translate_mrcs::Args),
    #[command(alias = "view_mrcs")]
    ViewMrcs(view_mrcs::Args),
    #[command(alias = "plot_classes")]
    PlotClasses(plot_classes::Args),
    Clean(clean::Args),
    #[command(alias = "analyze_landscape_full")]
    AnalyzeLandscapeFull(analyze_landscape_full::Args),
    #[command(alias = "analyze_convergence")]
    AnalyzeConvergence(analyze_convergence::Args),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Downsample(a) => downsample::run(a),
        Command::ParsePoseStar(a) => parse_pose::run_star(a),
        Command::ParsePoseCsparc(a) => parse_pose::run_cs(a),
        Command::ParseCtfStar(a) => parse_ctf::run_star(a),
        Command::ParseCtfCsparc(a) => parse_ctf::run_cs(a),
        Command::ParseStar(a) => parse_star::run(a),
        Command::ViewHeader(a) => view_header::run(a),
        Command::Info(a) => info::run(a),
        Command::Fsc(a) => fsc::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Phantom(a) => phantom::run(a),
        Command::EvalVol(a) => eval_vol::run(a),
        Command::EvalImages(a) => eval_images::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::AnalyzeLandscape(a) => analyze_landscape::run(a),
        Command::EvalAccuracy(a) => eval_accuracy::run(a),
        Command::TrainNn(a) => train_nn::run(a),
        Command::TrainVae(a) => train_vae::run(a),
        Command::TrainTwin(a) => train_twin::run(a),
        Command::PcTraversal(a) => pc_traversal::run(a),
        Command::GraphTraversal(a) => graph_traversal::run(a),
        Command::DirectTraversal(a) => direct_traversal::run(a),
        Command::Pdb2mrc(a) => pdb2mrc::run(a),
        Command::PoseSearch(a) => pose_search::run(a),
        Command::PoseError(a) => pose_error::run(a),
        Command::PcTrain(a) => pc_train::run(a),
        Command::PcSample(a) => pc_sample::run(a),
        Command::PriorTrain(a) => prior_train::run(a),
        Command::PriorSample(a) => prior_sample::run(a),
        Command::PriorInterpolate(a) => prior_interpolate::run(a),
        Command::PriorLangevin(a) => prior_langevin::run(a),
        Command::PriorEval(a) => prior_eval::run(a),
        Command::KlKliep(a) => kl_kliep::run(a),
        Command::Isometry(a) => isometry::run(a),
        Command::Disentangle(a) => disentangle::run(a),
        Command::PcReconstruct(a) => pc_reconstruct::run(a),
        Command::Pathway(a) => pathway::run(a),
        Command::TwinAnalyze(a) => twin_analyze::run(a),
        Command::Abinit(a) => abinit_ai::run(a),
        Command::TrainDec(a) => train_dec::run(a),
        Command::AbinitHomo(a) => abinit_homo::run(a),
        Command::AbinitHet(a) => abinit_het::run(a),
        Command::BackprojectVoxel(a) => backproject_voxel::run(a),
        Command::FilterMrcs(a) => filter::run_mrcs(a),
        Command::FilterStar(a) => filter::run_star(a),
        Command::PcPrepare(a) => pc_prepare::run(a),
        Command::PcObserve(a) => pc_observe::run(a),
        Command::PcEval(a) => pc_eval::run(a),
        Command::PcGenMetrics(a) => pc_gen_metrics::run(a),
        Command::GenMask(a) => gen_mask::run(a),
        Command::FlipHand(a) => vol_edit::run_flip(a),
        Command::InvertContrast(a) => vol_edit::run_invert(a),
        Command::AddPsize(a) => vol_edit::run_psize(a),
        Command::PlotFsc(a) => plot_fsc::run(a),
        Command::ViewCsHeader(a) => view_cs_header::run(a),
        Command::SelectClusters(a) => select_clusters::run(a),
        Command::FilterPkl(a) => filter_pkl::run(a),
        Command::ConcatPkls(a) => concat_pkls::run(a),
        Command::SelectRandom(a) => select_random::run(a),
        Command::Filter(a) => filter_latent::run(a),
        Command::WriteStar(a) => write_star::run(a),
        Command::WriteCs(a) => write_cs::run(a),
        Command::FilterCs(a) => write_cs::run_filter(a),
        Command::PhaseFlip(a) => phase_flip::run(a),
        Command::TranslateMrcs(a) => translate_mrcs::run(a),
        Command::ViewMrcs(a) => view_mrcs::run(a),
        Command::PlotClasses(a) => plot_classes::run(a),
        Command::Clean(a) => clean::run(a),
        Command::AnalyzeLandscapeFull(a) => analyze_landscape_full::run(a),
        Command::AnalyzeConvergence(a) => analyze_convergence::run(a),
    }
}
