//! `graph-traversal`: the shortest path through the particles between anchors along a
//! nearest-neighbour graph in latent space, as the reference's `cryodrgn graph_traversal`.
//! Each particle links to its `--max-neighbors` nearest particles; only links shorter than the
//! distance that leaves `--avg-neighbors` links per particle on average are kept (0 keeps all).
//! Dijkstra finds each anchor-to-anchor leg. Writes the path's z values (np.savetxt format) to
//! `-o` and its particle indices to `--outind`, and prints path and straight-line lengths.
//!
//! Example: `cryofield graph-traversal z.50.pkl --anchors analyze.50/kmeans20/centers_ind.txt -o z-path.txt --outind z-path-indices.txt`

use std::path::PathBuf;

use anyhow::Context;

use crate::analysis::latent::{load_z, savetxt, savetxt_int};
use crate::analysis::traversal::{graph_traversal, knn_graph, parse_anchors};
use crate::cli::direct_traversal::create_parent;

/// Shortest nearest-neighbour-graph path between anchor particles.
#[derive(Debug, clap::Args)]
#[command(about = "Shortest path between anchor particles on a nearest-neighbour graph of z")]
pub struct Args {
    /// Latents: z.N.pkl (z_mu is used), .npy or .txt
    pub zfile: PathBuf,
    /// Anchor particle indices, or .txt files of indices
    #[arg(long, required = true, num_args = 1..)]
    pub anchors: Vec<String>,
    /// Nearest neighbours considered per particle (the particle itself included)
    #[arg(long, default_value_t = 10)]
    pub max_neighbors: usize,
    /// Average neighbours per particle the distance cutoff aims for (0: no cutoff)
    #[arg(long, default_value_t = 5.0)]
    pub avg_neighbors: f64,
    /// Output .txt for the path z values
    #[arg(short = 'o', long = "outtxt", default_value = "z-path.txt")]
    pub outtxt: PathBuf,
    /// Output .txt for the path particle indices
    #[arg(long, default_value = "z-path-indices.txt")]
    pub outind: PathBuf,
    /// Print the path (index, distance from the previous point) to the screen
    #[arg(long)]
    pub verbose: bool,
}

/// Run `graph-traversal`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let lat = load_z(&a.zfile).with_context(|| format!("reading {}", a.zfile.display()))?;
    let (n, zdim) = (lat.n, lat.zdim);
    let anchors = parse_anchors(&a.anchors, n, false)?;
    let graph = knn_graph(&lat.z, n, zdim, a.max_neighbors, Some(a.avg_neighbors))?;
    if let Some(d) = graph.max_dist {
        eprintln!(
            "max distance between neighbors: {d:.4} (to enforce an average of {} neighbors); {} edges",
            a.avg_neighbors,
            graph.n_edges()
        );
    }
    let (path, legs) = graph_traversal(&lat.z, zdim, &graph, &anchors)?;
    for l in &legs {
        eprintln!(
            "{}->{}: path distance {:.4}, Euclidean distance {:.4}",
            l.from, l.to, l.path_length, l.euclidean
        );
    }
    let zpath: Vec<f64> = path
        .iter()
        .flat_map(|&i| lat.z[i * zdim..(i + 1) * zdim].iter().map(|&v| v as f64))
        .collect();
    if a.verbose {
        for (k, &i) in path.iter().enumerate() {
            let tag = if anchors.contains(&i) { "(a)" } else { "" };
            let d = if k == 0 {
                0.0
            } else {
                zpath[(k - 1) * zdim..k * zdim]
                    .iter()
                    .zip(&zpath[k * zdim..(k + 1) * zdim])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            };
            println!("{i}{tag}\t{d:.3}");
        }
    }
    create_parent(&a.outind)?;
    savetxt_int(&a.outind, &path)?;
    create_parent(&a.outtxt)?;
    savetxt(&a.outtxt, &zpath, zdim)?;
    eprintln!(
        "saved {} path points to {} and {}",
        path.len(),
        a.outtxt.display(),
        a.outind.display()
    );
    Ok(())
}
