//! Criterion benches for MRC reads and 2D Hartley transforms: groups named `op/backend/size`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cryofield::fourier::downsample::downsample_images;
use cryofield::fourier::fft::ht2_center;
use cryofield::io::mrc::{write_mrc, MrcFile};

fn images(n: usize, d: usize) -> Vec<f32> {
    (0..n * d * d)
        .map(|i| ((i as f32) * 0.618_034).fract() - 0.5)
        .collect()
}

/// Roofline: bytes moved from the page cache (memory bandwidth bound).
fn mrc_read(c: &mut Criterion) {
    let (n, d) = (2000, 128);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.mrcs");
    write_mrc(&path, &images(n, d), (n, d, d), 1.0, false).unwrap();
    let f = MrcFile::open(&path).unwrap();
    let mut g = c.benchmark_group("mrc_read/cpu");
    g.throughput(Throughput::Bytes((n * d * d * 4) as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("{n}x{d}")), |b| {
        b.iter(|| f.read_all().unwrap())
    });
    let mut out = vec![0f32; d * d];
    g.throughput(Throughput::Bytes((d * d * 4) as u64));
    g.bench_function(
        BenchmarkId::from_parameter(format!("random_image/{d}")),
        |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 7919) % n;
                f.read_image_into(i, &mut out).unwrap()
            })
        },
    );
    g.finish();
}

/// Roofline: 2D FFT flops, about 5·D²·log2(D²) per image.
fn hartley(c: &mut Criterion) {
    for d in [64usize, 128] {
        let n = 256;
        let x = images(n, d);
        let mut g = c.benchmark_group("ht2_center/cpu");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(d), |b| {
            b.iter(|| ht2_center(&x, d))
        });
        g.finish();
    }
    let (n, d) = (256, 128);
    let x = images(n, d);
    let mut g = c.benchmark_group("downsample/cpu");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::from_parameter("128to64"), |b| {
        b.iter(|| downsample_images(&x, d, 64))
    });
    g.finish();
}

criterion_group!(benches, mrc_read, hartley);
criterion_main!(benches);
