//! Rank statistics for comparing latents with ground truth.

/// Ranks of `x` (0-based, ties get the mean of their ranks, as `scipy.stats.rankdata`).
/// Non-finite values rank as given by `f64::total_cmp`.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of two equal-length samples; NaN when either is constant or shorter than 2.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a[..n].iter().zip(&b[..n]) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman rank correlation ρ (Pearson correlation of the ranks, ties averaged).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 1.0]), vec![3.0, 0.5, 2.0, 0.5]);
    }

    #[test]
    fn spearman_known_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        // monotone transforms give ±1
        let b: Vec<f64> = a.iter().map(|x: &f64| x.powi(3)).collect();
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c: Vec<f64> = a.iter().map(|x| -x.exp()).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]) = 0.8207826816681233
        let d = [5.0, 6.0, 7.0, 8.0, 7.0];
        assert!((spearman(&a, &d) - 0.820_782_681_668_123_3).abs() < 1e-12);
        assert!(spearman(&a, &[1.0; 5]).is_nan());
    }
}
