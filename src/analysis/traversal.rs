//! Paths through latent space between particles: direct linear interpolation between anchors
//! (the reference's `direct_traversal`), shortest paths on a nearest-neighbour graph of the
//! particles (`graph_traversal`), and anchor parsing shared by both commands.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::Path;

use rayon::prelude::*;

use crate::analysis::kmeans::nearest_points;
use crate::analysis::pca::check_z;
use crate::error::{Error, IoContext, Result};

/// Anchor particle indices from command-line values, as the reference's `parse_anchors`: each
/// value is an existing text file of integers (whitespace-separated, e.g. `centers_ind.txt`) or
/// a non-negative integer. With `closed_loop` the first anchor is appended at the end.
///
/// # Errors
/// A value that is neither, an index `≥ n`, or fewer than two anchors in all.
pub fn parse_anchors(values: &[String], n: usize, closed_loop: bool) -> Result<Vec<usize>> {
    let mut anchors = Vec::new();
    for v in values {
        let p = Path::new(v);
        let new: Vec<i64> = if p.is_file() {
            let text = std::fs::read_to_string(p).at(p)?;
            text.split_whitespace()
                .map(|t| {
                    // np.loadtxt(...).astype(int) also accepts "3.000000e+00".
                    t.parse::<i64>()
                        .ok()
                        .or_else(|| {
                            t.parse::<f64>()
                                .ok()
                                .filter(|f| f.is_finite())
                                .map(|f| f.trunc() as i64)
                        })
                        .ok_or_else(|| Error::format(p, format!("`{t}` is not an integer index")))
                })
                .collect::<Result<_>>()?
        } else if let Ok(i) = v.parse::<i64>() {
            vec![i]
        } else {
            return Err(Error::invalid(format!(
                "unrecognized anchor value `{v}`, which is neither an integer nor a .txt file of integers"
            )));
        };
        for a in new {
            if a < 0 || a as u64 >= n as u64 {
                return Err(Error::invalid(format!(
                    "invalid anchor index {a}: the latents hold {n} points (indices 0..{n})"
                )));
            }
            anchors.push(a as usize);
        }
    }
    if closed_loop {
        if let Some(&a) = anchors.first() {
            anchors.push(a);
        }
    }
    if anchors.len() < 2 {
        return Err(Error::invalid(format!(
            "need at least two anchors for a traversal, got {}",
            anchors.len()
        )));
    }
    Ok(anchors)
}

/// Direct traversal `(M, zdim)` through the anchors' latents, as the reference's
/// `direct_traversal`: between consecutive anchors `a → b`, the `n` points
/// `z_a + k·(z_b − z_a)/(n − 1)`, `k = 0..n`, in f32, the last of each segment dropped except
/// the final anchor; `M = (len(anchors) − 1)(n − 1) + 1`. Endpoints equal the anchors exactly.
pub fn direct_traversal(z: &[f32], zdim: usize, anchors: &[usize], n: usize) -> Result<Vec<f32>> {
    if n < 2 {
        return Err(Error::invalid(format!(
            "-n must be at least 2 (points between anchors, inclusive), got {n}"
        )));
    }
    if anchors.len() < 2 {
        return Err(Error::invalid("need at least two anchors"));
    }
    let npts = z.len() / zdim.max(1);
    if let Some(&a) = anchors.iter().find(|&&a| a >= npts) {
        return Err(Error::invalid(format!(
            "anchor {a} out of range for {npts} points"
        )));
    }
    let row = |i: usize| &z[i * zdim..(i + 1) * zdim];
    let mut out = Vec::with_capacity(((anchors.len() - 1) * (n - 1) + 1) * zdim);
    for w in anchors.windows(2) {
        let (s, e) = (row(w[0]), row(w[1]));
        let step: Vec<f32> = s
            .iter()
            .zip(e)
            .map(|(&a, &b)| (b - a) / (n - 1) as f32)
            .collect();
        for k in 0..n - 1 {
            out.extend(s.iter().zip(&step).map(|(&a, &d)| k as f32 * d + a));
        }
    }
    out.extend_from_slice(row(anchors[anchors.len() - 1]));
    Ok(out)
}

/// Replaces each point of `path` `(m, zdim)` by the nearest particle of `z`: the particle
/// indices `(m)` (for an "on-data" traversal whose z values are `z[indices]`).
pub fn snap_to_data(z: &[f32], zdim: usize, path: &[f32]) -> Vec<usize> {
    let q: Vec<f64> = path.iter().map(|&v| v as f64).collect();
    nearest_points(z, zdim, &q)
}

/// A directed nearest-neighbour graph of the particles: `edges[i]` lists `(j, ‖z_i − z_j‖)`.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    /// out-edges of every node `(N)`
    pub edges: Vec<Vec<(usize, f64)>>,
    /// the distance cutoff applied (edges strictly shorter are kept), if any
    pub max_dist: Option<f64>,
}

impl KnnGraph {
    /// Number of edges.
    pub fn n_edges(&self) -> usize {
        self.edges.iter().map(Vec::len).sum()
    }
}

/// The reference's `graph_traversal` graph of `z` `(n, zdim)`: each point's `max_neighbors`
/// nearest points (the point itself included, at distance 0, as the reference's `topk`),
/// then, when `avg_neighbors` is given and positive, only the edges strictly shorter than the
/// `⌊n·avg_neighbors⌋`-th smallest of all those distances, so nodes keep `avg_neighbors`
/// neighbours on average. Distances are exact Euclidean (the reference uses
/// `|a|² + |b|² − 2a·b` in f32). Brute force, O(n²·zdim), rows in parallel.
pub fn knn_graph(
    z: &[f32],
    n: usize,
    zdim: usize,
    max_neighbors: usize,
    avg_neighbors: Option<f64>,
) -> Result<KnnGraph> {
    check_z("graph traversal input", z, n, zdim)?;
    if max_neighbors == 0 {
        return Err(Error::invalid("--max-neighbors must be at least 1"));
    }
    let k = max_neighbors.min(n);
    let nbrs: Vec<Vec<(usize, f64)>> = z
        .par_chunks(zdim)
        .map(|x| {
            let mut d: Vec<(usize, f64)> = z
                .chunks(zdim)
                .enumerate()
                .map(|(j, y)| {
                    let s: f64 = x
                        .iter()
                        .zip(y)
                        .map(|(&a, &b)| {
                            let t = a as f64 - b as f64;
                            t * t
                        })
                        .sum();
                    (j, s.sqrt())
                })
                .collect();
            let cmp = |a: &(usize, f64), b: &(usize, f64)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
            if k < d.len() {
                d.select_nth_unstable_by(k - 1, cmp);
                d.truncate(k);
            }
            d.sort_by(cmp);
            d
        })
        .collect();
    let max_dist = match avg_neighbors {
        Some(avg) if avg.is_nan() || avg < 0.0 => {
            return Err(Error::invalid(format!(
                "--avg-neighbors must be non-negative, got {avg}"
            )))
        }
        Some(avg) if avg > 0.0 => {
            let avg = avg.min(k as f64);
            let total = ((n as f64 * avg) as usize).max(1);
            let mut all: Vec<f64> = nbrs.iter().flatten().map(|e| e.1).collect();
            let idx = (total - 1).min(all.len() - 1);
            let (_, v, _) = all.select_nth_unstable_by(idx, f64::total_cmp);
            Some(*v)
        }
        _ => None,
    };
    let edges = nbrs
        .into_iter()
        .map(|row| {
            row.into_iter()
                .filter(|e| max_dist.is_none_or(|m| e.1 < m))
                .collect()
        })
        .collect();
    Ok(KnnGraph { edges, max_dist })
}

#[derive(PartialEq)]
struct State(f64, usize);
impl Eq for State {}
impl Ord for State {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed for a min-heap; ties broken by node index.
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}
impl PartialOrd for State {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Dijkstra shortest path from `src` to `dest` on `graph`: the node sequence (both ends
/// included) and its total length, or `None` when `dest` is unreachable.
pub fn shortest_path(graph: &KnnGraph, src: usize, dest: usize) -> Option<(Vec<usize>, f64)> {
    let n = graph.edges.len();
    if src >= n || dest >= n {
        return None;
    }
    let mut dist = vec![f64::INFINITY; n];
    let mut pred = vec![usize::MAX; n];
    let mut done = vec![false; n];
    let mut heap = BinaryHeap::new();
    dist[src] = 0.0;
    heap.push(State(0.0, src));
    while let Some(State(d, v)) = heap.pop() {
        if done[v] {
            continue;
        }
        done[v] = true;
        if v == dest {
            let mut path = vec![v];
            let mut p = v;
            while pred[p] != usize::MAX {
                p = pred[p];
                path.push(p);
            }
            path.reverse();
            return Some((path, d));
        }
        for &(w, len) in &graph.edges[v] {
            let nd = d + len;
            if !done[w] && nd < dist[w] {
                dist[w] = nd;
                pred[w] = v;
                heap.push(State(nd, w));
            }
        }
    }
    None
}

/// One leg `a → b` of a graph traversal.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    /// start anchor
    pub from: usize,
    /// end anchor
    pub to: usize,
    /// length along the graph
    pub path_length: f64,
    /// straight-line distance `‖z_a − z_b‖`
    pub euclidean: f64,
}

/// Graph traversal through `anchors` on `graph`: the concatenated particle indices (each
/// junction anchor once) and the legs, as the reference's `graph_traversal`.
///
/// # Errors
/// When some leg has no path (the graph is disconnected between those anchors).
pub fn graph_traversal(
    z: &[f32],
    zdim: usize,
    graph: &KnnGraph,
    anchors: &[usize],
) -> Result<(Vec<usize>, Vec<Leg>)> {
    let mut full: Vec<usize> = Vec::new();
    let mut legs = Vec::new();
    for w in anchors.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (path, len) = shortest_path(graph, a, b).ok_or_else(|| {
            Error::invalid(format!(
                "no path from {a} to {b} in the nearest-neighbour graph (try larger --max-neighbors or --avg-neighbors)"
            ))
        })?;
        let skip = usize::from(full.last() == path.first());
        full.extend_from_slice(&path[skip..]);
        let euclidean = z[a * zdim..(a + 1) * zdim]
            .iter()
            .zip(&z[b * zdim..(b + 1) * zdim])
            .map(|(&x, &y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        legs.push(Leg {
            from: a,
            to: b,
            path_length: len,
            euclidean,
        });
    }
    Ok((full, legs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_traversal_counts_and_midpoints() {
        let z = [0.0f32, 0.0, 1.0, 2.0, 3.0, 3.0];
        let p = direct_traversal(&z, 2, &[0, 1, 2], 3).unwrap();
        assert_eq!(p.len(), 5 * 2);
        assert_eq!(&p[2..4], &[0.5, 1.0]);
        assert_eq!(&p[4..6], &[1.0, 2.0]);
        assert_eq!(&p[8..10], &[3.0, 3.0]);
    }

    #[test]
    fn parse_anchor_errors() {
        assert!(parse_anchors(&["3".into()], 5, false).is_err());
        assert_eq!(parse_anchors(&["3".into()], 5, true).unwrap(), vec![3, 3]);
        assert!(parse_anchors(&["1".into(), "5".into()], 5, false).is_err());
        assert!(parse_anchors(&["x".into(), "1".into()], 5, false).is_err());
    }

    #[test]
    fn dijkstra_prefers_short_hops() {
        // 0 → 2 directly costs 10, via 1 costs 2.
        let g = KnnGraph {
            edges: vec![vec![(1, 1.0), (2, 10.0)], vec![(2, 1.0)], vec![]],
            max_dist: None,
        };
        assert_eq!(shortest_path(&g, 0, 2), Some((vec![0, 1, 2], 2.0)));
        assert_eq!(shortest_path(&g, 2, 0), None);
    }
}
