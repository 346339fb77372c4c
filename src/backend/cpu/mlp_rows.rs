//! A ReLU coordinate network with a thin output layer (the decoder: 1 or 2 outputs) in row
//! chunks, hidden layers in bf16 on [`amx`]'s engine (mixed precision, f32 sums).
//!
//! The whole-matrix path ([`super::mlp`]) runs one parallel GEMM per layer over all N rows:
//! every activation (N × width f32, 13 MB for the 256-wide decoder on a batch of 8 images at
//! D = 64) is written by one GEMM and read back, from L3, by the next, and each layer is a
//! parallel region of its own. Here each task takes a chunk of rows through every layer while
//! the chunk stays in L2 ([`chunk_rows`]):
//! - forward: h_l = ReLU(h_{l−1}·W_lᵀ + b_l (+ h_{l−1})) chunk by chunk, each layer's B = W_lᵀ
//!   packed once per call ([`amx::PackedB`]), then the output layer's dot products; the saved
//!   activations are still written whole, and each hidden output is also emitted as bf16 tiles
//!   that are the next layer's A ([`amx::RowsA::Tiles`]), so no layer converts its input again;
//! - backward, from dy: the output layer's dW, db and input gradient in f32, then per hidden
//!   layer dW_l += gᵀ·h_{l−1} accumulated per task in f32 tiles ([`amx::accumulate`]), db_l +=
//!   Σ_rows g, and the next g = (g·W_l (+ g)) ⊙ 1[h_{l−1} > 0] into a chunk-sized buffer that
//!   never leaves the task (and, where it is again an input gradient's A, as bf16 tiles).
//!   Layer 0's input gradient (the decoder asks only for its few z columns) is a 16-wide f32
//!   loop. Hidden layers wider than 256 ([`stores_g`]) write each
//!   layer's g into a whole N × n_out buffer instead, and dW_l is one whole-matrix GEMM per
//!   layer after the chunks.
//!
//! The arithmetic is the whole-matrix path's: the same bf16 rounding and tile kernel, the same
//! f32 dot products and short-k sums, so the forward output, the saved activations and every
//! hidden input gradient agree with it bit for bit (and, with g kept whole, the hidden layers'
//! dW); dW, db and layer 0's dx otherwise sum the same products in another order (per task,
//! then the tasks in order). Tasks hold a fixed number of chunks, so results do not depend on
//! the thread count.
//!
//! Everything here runs only when [`amx::available`], which implies AVX-512 F/BW/VL: the f32
//! loops are compiled for it.

use super::amx::{self, AccA, PackedB, RowsA, View};
use super::gemm::{dot, epilogue_row, Epilogue};
use rayon::prelude::*;

/// One layer (f32 views of the backend's buffers).
pub(super) struct Layer<'a> {
    /// Weight (n_out, n_in).
    pub w: &'a [f32],
    /// Bias (n_out).
    pub b: &'a [f32],
    pub n_in: usize,
    pub n_out: usize,
    pub residual: bool,
}

/// Chunks per backward task: a fixed number, so the order of dW's sums does not depend on the
/// thread count.
const CHUNKS_PER_TASK: usize = 4;

/// Rows per chunk for this network and N rows: the widest activation chunk near 256 KiB (f32),
/// so that a layer's input and output chunks and packed operands stay in L2. `None` — use the
/// whole-matrix path — when no bf16 engine is available, there is no hidden layer, a hidden
/// layer is narrower than 32 or wider than 1024, the output layer has more than 16 outputs, or N
/// is under four chunks.
///
/// Measured (one train-vae epoch, 3 + 3 layers, against the whole-matrix path): 128 and 256
/// wide, with dW summed per task, 33% and 28% faster. Per-task dW sums do not pay beyond 256
/// (512 wide 9% slower, 1024 wide 4.5× slower: each task's n_out × n_in sums are loaded and
/// stored per chunk of ever fewer rows), so wider networks keep g whole and take dW as one
/// GEMM per layer ([`stores_g`]): 512 wide 9% faster, 1024 wide 8% faster.
pub(super) fn chunk_rows(layers: &[Layer<'_>], n: usize) -> Option<usize> {
    let (top, hidden) = layers.split_last()?;
    let wmax = hidden.iter().map(|l| l.n_in.max(l.n_out)).max()?;
    let wmin = hidden.iter().map(|l| l.n_in.min(l.n_out)).min()?;
    if wmin < 32 || wmax > 1024 || top.n_out > 16 || !amx::available() {
        return None;
    }
    let rc = (65536 / wmax).clamp(32, 512) / 32 * 32;
    (n >= 4 * rc).then_some(rc)
}

/// Whether [`backward`] keeps each hidden layer's g whole (N × n_out, as bf16 in
/// [`amx::pack_at_groups`]'s layout, given by the caller: [`stored_g_len`]) and computes dW_l
/// as one whole-matrix GEMM per layer after the chunks, instead of per-task sums: for hidden
/// layers wider than 256, where the per-task dW sums cost more than they save.
pub(super) fn stores_g(layers: &[Layer<'_>]) -> bool {
    let hidden = &layers[..layers.len().saturating_sub(1)];
    hidden.iter().any(|l| l.n_in.max(l.n_out) > 256)
}

/// Length (u16) of one hidden layer's stored g for N rows ([`stores_g`]).
pub(super) fn stored_g_len(n: usize, layer: &Layer<'_>) -> usize {
    amx::at_len(n, layer.n_out)
}

/// How many of the hidden layers' saved outputs [`forward`] keeps packed ([`SavedMut::Packed`]):
/// all but the last (which the f32 output layer reads, forward and backward), when the backward
/// sums dW per task (not [`stores_g`], whose whole-matrix dW GEMMs read f32).
///
/// Measured (one train-vae epoch, 256×3, against f32 saves): see BENCHMARKS.md, session 12.
pub(super) fn packed_saves(layers: &[Layer<'_>]) -> usize {
    match stores_g(layers) {
        true => 0,
        false => layers.len().saturating_sub(2),
    }
}

/// Length (u16) of one hidden layer's packed saved output for N rows ([`SavedMut::Packed`]).
pub(super) fn packed_len(n: usize, layer: &Layer<'_>) -> usize {
    amx::rows_len(n, layer.n_out)
}

/// The network's input x (N × n_in of layer 0), as [`forward`] and [`backward`] read it.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    /// Row-major, whole.
    Rows(&'a [f32]),
    /// Generated chunk by chunk: `f(r0, rows, out)` writes rows r0..r0 + rows into `out`
    /// (rows × n_in), the same values each time (the decoder's positional encoding, from each
    /// row's coordinates and latent: the N × n_in features are never held whole).
    Generated(&'a (dyn Fn(usize, usize, &mut [f32]) + Sync)),
}

impl Input<'_> {
    /// Rows r0..r0 + rows (of width `w`): a view of the whole input, or generated into `buf`.
    fn rows<'b>(&'b self, r0: usize, rows: usize, w: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        match *self {
            Input::Rows(x) => &x[r0 * w..][..rows * w],
            Input::Generated(f) => {
                buf.resize(rows * w, 0.0);
                f(r0, rows, &mut buf[..rows * w]);
                &buf[..rows * w]
            }
        }
    }
}

/// Where [`forward`] saves a hidden layer's output (N × n_out).
pub(super) enum SavedMut<'a> {
    /// As f32, row-major.
    F32(&'a mut [f32]),
    /// As bf16, chunk by chunk (`rc` rows at `rc`·⌈n_out/32⌉·32) in [`amx::pack_rows`]'s
    /// layout: the backward's B of dW_{l+1} = gᵀ·h_l as it is, and its ReLU mask h_l > 0
    /// ([`amx::RowsIo::mask_rows`]) ([`packed_len`] u16). Half the memory traffic of f32, and no
    /// packing or unpacking in the backward. The mask is that of the bf16 value: it differs from h > 0
    /// only where 0 < h < 2⁻¹³³ (bf16's smallest subnormal over 2) rounds to 0.
    Packed(&'a mut [u16]),
}

/// A hidden layer's saved output as [`backward`] reads it ([`SavedMut`]).
#[derive(Clone, Copy)]
pub(super) enum SavedRef<'a> {
    F32(&'a [f32]),
    Packed(&'a [u16]),
}

/// The forward in chunks of `rc` rows: h_l = ReLU(h_{l−1}·W_lᵀ + b_l (+ h_{l−1} if residual))
/// for the hidden layers (h_{−1} = x, N × n_in_0), saved to hs[l] (N × n_out_l, [`SavedMut`])
/// when given (else kept in per-thread chunk buffers), then y (N × n_out) = h·Wᵀ + b (+ h) of
/// the output layer. Returns `false` (nothing written) when no bf16 engine is available.
///
/// # Panics
/// If a buffer is too short for its shape.
pub(super) fn forward(
    layers: &[Layer<'_>],
    x: Input<'_>,
    n: usize,
    rc: usize,
    hs: Option<&mut [SavedMut<'_>]>,
    y: &mut [f32],
) -> bool {
    let Some((top, hidden)) = layers.split_last() else {
        return false;
    };
    assert!(rc > 0, "mlp rows: chunk rows");
    let Some(packed) = hidden
        .iter()
        .map(|l| {
            let wt = View {
                buf: l.w,
                rs: 1,
                cs: l.n_in,
            };
            PackedB::new(wt, l.n_in, l.n_out)
        })
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let nchunks = n.div_ceil(rc);
    let nh = hidden.len();
    // Each chunk's pieces of the saved outputs (one per hidden layer), when saving.
    let mut per: Vec<Vec<SavedMut<'_>>> = (0..nchunks).map(|_| Vec::new()).collect();
    if let Some(hs) = hs {
        assert_eq!(nh, hs.len(), "mlp rows: one output per hidden layer");
        for (h, l) in hs.iter_mut().zip(hidden) {
            match h {
                SavedMut::F32(h) => {
                    for (c, s) in h[..n * l.n_out].chunks_mut(rc * l.n_out).enumerate() {
                        per[c].push(SavedMut::F32(s));
                    }
                }
                SavedMut::Packed(h) => {
                    let per_chunk = amx::rows_len(rc, l.n_out);
                    for (c, s) in h[..packed_len(n, l)].chunks_mut(per_chunk).enumerate() {
                        per[c].push(SavedMut::Packed(s));
                    }
                }
            }
        }
    }
    let ys: Vec<&mut [f32]> = y[..n * top.n_out].chunks_mut(rc * top.n_out).collect();
    // Layer l on a chunk: its f32 input (for the residual; layer 0's A), its A as the tiles the
    // layer below emitted (l ≥ 1), and where it emits its own output as the next layer's A.
    let layer_rows = |l: usize,
                      input: &[f32],
                      tiles: &[u16],
                      rows: usize,
                      out: &mut [f32],
                      emit: Option<&mut [u16]>,
                      emit_rows: Option<&mut [u16]>| {
        let layer = &hidden[l];
        let epi = Epilogue {
            bias: Some(layer.b),
            residual: layer.residual.then_some(input),
            mask: None,
            relu: true,
        };
        let a = match l {
            0 => RowsA::View(View {
                buf: input,
                rs: layer.n_in,
                cs: 1,
            }),
            _ => RowsA::Tiles(tiles),
        };
        let io = amx::RowsIo {
            emit,
            emit_rows,
            ..Default::default()
        };
        amx::gemm_rows(rows, a, &packed[l], epi, out, io);
    };
    per.into_par_iter()
        .zip(ys)
        .enumerate()
        .for_each(|(c, (mut saves, yc))| {
            let rows = (n - c * rc).min(rc);
            // Every hidden layer but the last (its output goes to the f32 output layer) emits
            // the next layer's A.
            let forward_emit =
                |l: usize| (l + 1 < nh).then(|| amx::tiles_len(rows, hidden[l].n_out));
            let mut xbuf = XBUF.with(|t| t.take());
            let x_rows = x.rows(c * rc, rows, hidden[0].n_in, &mut xbuf);
            // A layer's f32 output goes to its saved piece when that is f32, else to one of two
            // thread-local chunk buffers taken in turn (and, saved packed, is emitted so too).
            SCRATCH.with(|cell| {
                let mut bufs = cell.borrow_mut();
                let mut tbufs = TILES.with(|t| t.take());
                let [b0, b1] = &mut *bufs;
                for (l, layer) in hidden.iter().enumerate() {
                    let len = rows * layer.n_out;
                    let (sin, sout): (&Vec<f32>, &mut Vec<f32>) = match l % 2 {
                        0 => (&*b1, &mut *b0),
                        _ => (&*b0, &mut *b1),
                    };
                    let at = l.min(saves.len());
                    let (done, rest) = saves.split_at_mut(at);
                    let input: &[f32] = match (l, done.last()) {
                        (0, _) => x_rows,
                        (_, Some(SavedMut::F32(h))) => h,
                        _ => &sin[..rows * hidden[l - 1].n_out],
                    };
                    let (tiles, emit) = tile_bufs(&mut tbufs, l, forward_emit(l));
                    match rest.first_mut() {
                        Some(SavedMut::F32(h)) => {
                            layer_rows(l, input, tiles, rows, &mut h[..len], emit, None);
                        }
                        save => {
                            if sout.len() < len {
                                sout.resize(len, 0.0);
                            }
                            // (packed: emitted so as the product writes it)
                            let emit_rows = match save {
                                Some(SavedMut::Packed(p)) => Some(&mut p[..]),
                                _ => None,
                            };
                            let out = &mut sout[..len];
                            layer_rows(l, input, tiles, rows, out, emit, emit_rows);
                        }
                    }
                }
                TILES.with(|t| t.replace(tbufs));
                let last = nh - 1;
                let h: &[f32] = match saves.get(last) {
                    Some(SavedMut::F32(h)) => h,
                    _ if last % 2 == 0 => &b0[..],
                    _ => &b1[..],
                };
                // SAFETY: AVX-512 F (PackedB::new returned Some: a bf16 engine is available,
                // which implies it).
                unsafe { top_forward(top, &h[..rows * top.n_in], yc) };
            });
            XBUF.with(|t| t.replace(xbuf));
        });
    true
}

thread_local! {
    /// The forward's two f32 chunk buffers per thread (layer outputs not saved as f32),
    /// reused across calls.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new()])
    };
    /// The forward's two bf16 tile buffers per thread: each hidden layer's output emitted as
    /// the next layer's A ([`amx::RowsA::Tiles`]), taken in turn.
    static TILES: std::cell::RefCell<[Vec<u16>; 2]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new()])
    };
    /// A generated input's rows of a chunk ([`Input::Generated`]), per thread.
    static XBUF: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The backward's g of a chunk in [`amx::pack_rows`]' layout, per thread.
    static GROWS: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The two tile buffers as seen by layer l, in either direction: what it reads (buffer
/// (l + 1) % 2, which its neighbour emitted into) and, when `emit_len` is given, where it emits
/// (buffer l % 2, grown to that length). In the forward layer l reads what layer l − 1 emitted;
/// in the backward what layer l + 1's input gradient emitted.
fn tile_bufs(
    bufs: &mut [Vec<u16>; 2],
    l: usize,
    emit_len: Option<usize>,
) -> (&[u16], Option<&mut [u16]>) {
    let [b0, b1] = bufs;
    let (read, write) = if l.is_multiple_of(2) {
        (b1, b0)
    } else {
        (b0, b1)
    };
    let emit = emit_len.map(|len| {
        if write.len() < len {
            write.resize(len, 0);
        }
        &mut write[..len]
    });
    (&read[..], emit)
}

/// y = h·Wᵀ + b (+ h) per row of the chunk, as the whole-matrix path computes a thin output
/// (one [`dot`] per element, the bias, then the residual).
///
/// # Safety
/// AVX-512 F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn top_forward(top: &Layer<'_>, h: &[f32], y: &mut [f32]) {
    let (ni, no) = (top.n_in, top.n_out);
    for (hr, yr) in h.chunks_exact(ni).zip(y.chunks_exact_mut(no)) {
        for (o, v) in yr.iter_mut().enumerate() {
            *v = dot(hr, &top.w[o * ni..(o + 1) * ni]) + top.b[o];
            if top.residual {
                *v += hr[o];
            }
        }
    }
}

/// One backward task's sums per layer: dW (hidden layers padded to whole 32 × 32 blocks), db;
/// and, for a grouped dx, Σ g of layer 0 over the task's rows of each group it touches.
type TaskSums = (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<(usize, Vec<f32>)>);

/// Columns col0.. of ∂L/∂x asked of [`backward`], added to `buf`: per row (`group` 1: N ×
/// (n_in_0 − col0)) or summed over consecutive groups of `group` rows (N / group rows; N a
/// multiple of it). Grouped, layer 0's g is summed over each group's rows first and the sums
/// are multiplied by W_0's columns once per group.
pub(super) struct Dx<'a> {
    pub buf: &'a mut [f32],
    pub col0: usize,
    pub group: usize,
}

/// Gradients of one layer, added to: dW (n_out × n_in), db (n_out).
pub(super) type Grad<'a> = (&'a mut [f32], &'a mut [f32]);

/// The backward in chunks of `rc` rows from dy (N × n_out of the output layer): dW_l +=
/// gᵀ·h_{l−1}, db_l += Σ_rows g for every layer and, when asked, columns col0.. of ∂L/∂x
/// added to `dx` ([`Dx`]). `hs` are the forward's hidden outputs. Returns `false`
/// (nothing written) when no bf16 engine is available.
///
/// # Panics
/// If a buffer is too short for its shape or col0 > n_in_0.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    layers: &[Layer<'_>],
    x: Input<'_>,
    hs: &[SavedRef<'_>],
    dy: &[f32],
    n: usize,
    rc: usize,
    grads: &mut [Grad<'_>],
    dx: Option<Dx<'_>>,
    mut gstore: Option<&mut [&mut [u16]]>,
) -> bool {
    let Some((top, hidden)) = layers.split_last() else {
        return false;
    };
    let nh = hidden.len();
    assert!(
        nh > 0 && hs.len() == nh && grads.len() == nh + 1,
        "mlp rows: layers"
    );
    if let Some(gs) = gstore.as_deref() {
        assert!(
            gs.len() == nh
                && gs
                    .iter()
                    .zip(hidden)
                    .all(|(g, l)| g.len() >= stored_g_len(n, l)),
            "mlp rows: one stored gradient per hidden layer"
        );
    }
    assert!(rc > 0, "mlp rows: chunk rows");
    assert!(dy.len() >= n * top.n_out, "mlp rows: dy");
    // (With one hidden layer there is no B to pack, so this is not implied by PackedB::new.)
    if !amx::available() {
        return false;
    }
    // B = W_l (n_out × n_in, row-major) of the input gradient g·W_l, for hidden l ≥ 1.
    let Some(packed) = hidden[1..]
        .iter()
        .map(|l| {
            let w = View {
                buf: l.w,
                rs: l.n_in,
                cs: 1,
            };
            PackedB::new(w, l.n_out, l.n_in)
        })
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let l0 = &layers[0];
    let col0 = dx.as_ref().map_or(0, |d| d.col0);
    let group = dx.as_ref().map_or(1, |d| d.group);
    assert!(group > 0 && n.is_multiple_of(group), "mlp rows: dx group");
    assert!(col0 <= l0.n_in, "mlp rows: dx first column past the input");
    let width = l0.n_in - col0;
    // W_0's asked columns, 16 wide per k (zero-padded), for the dx loop.
    let wp = width.div_ceil(16) * 16;
    let mut w0c = vec![0f32; l0.n_out * wp];
    for (k, row) in w0c.chunks_exact_mut(wp).enumerate() {
        row[..width].copy_from_slice(&l0.w[k * l0.n_in + col0..(k + 1) * l0.n_in]);
    }
    let task_rows = CHUNKS_PER_TASK * rc;
    let ntask = n.div_ceil(task_rows);
    // Per-row dx: each task's rows of it. Grouped: the tasks return g's group sums instead.
    let (dx_parts, grouped): (Vec<Option<&mut [f32]>>, _) = match dx {
        Some(d) if width > 0 && group == 1 => (
            d.buf[..n * width]
                .chunks_mut(task_rows * width)
                .map(Some)
                .collect(),
            None,
        ),
        Some(d) if width > 0 => ((0..ntask).map(|_| None).collect(), Some(d.buf)),
        _ => ((0..ntask).map(|_| None).collect(), None),
    };
    let summing = grouped.is_some();
    // Each task's rows of the stored gradients (one slice per hidden layer), when storing.
    let storing = gstore.is_some();
    // (task_rows is a multiple of 32: one task's rows are whole groups of the layout)
    let mut g_parts: Vec<Vec<&mut [u16]>> = (0..ntask).map(|_| Vec::new()).collect();
    if let Some(gs) = gstore.as_deref_mut() {
        for (g, l) in gs.iter_mut().zip(hidden) {
            let per_task = amx::at_len(task_rows, l.n_out);
            for (t, s) in g[..stored_g_len(n, l)].chunks_mut(per_task).enumerate() {
                g_parts[t].push(s);
            }
        }
    }
    let partial: Vec<TaskSums> = dx_parts
        .into_par_iter()
        .zip(g_parts)
        .enumerate()
        .map(|(t, (mut dxp, mut gp))| {
            // Stored: the hidden layers' dW are whole-matrix GEMMs after the tasks.
            // (from the pool, not cleared: each task's first chunk writes them whole)
            let mut acc: Vec<Vec<f32>> = hidden
                .iter()
                .map(|l| match storing {
                    true => Vec::new(),
                    false => pooled(l.n_out.div_ceil(32) * 32 * l.n_in.div_ceil(32) * 32),
                })
                .collect();
            acc.push(vec![0f32; top.n_out * top.n_in]);
            let mut db: Vec<Vec<f32>> = layers.iter().map(|l| vec![0f32; l.n_out]).collect();
            let mut gsums: Vec<(usize, Vec<f32>)> = Vec::new();
            let mut scratch = Vec::new();
            let mut bufs = [Vec::<f32>::new(), Vec::new()];
            let mut tbufs = TILES.with(|t| t.take());
            // This layer's g in pack_rows' layout: dW's transposed A (not when storing g).
            let mut grows = GROWS.with(|t| t.take());
            let mut xbuf = XBUF.with(|t| t.take());
            let r_task = t * task_rows;
            for r0 in (r_task..(r_task + task_rows).min(n)).step_by(rc) {
                let rows = (n - r0).min(rc);
                let off = r0 - r_task;
                let SavedRef::F32(h_top) = hs[nh - 1] else {
                    panic!("mlp rows: the last hidden layer's output is saved as f32");
                };
                let h_top = &h_top[r0 * top.n_in..][..rows * top.n_in];
                // g of a hidden layer on this chunk: one of two chunk buffers taken in turn
                // (bufs[cur]).
                bufs[0].resize(rows * top.n_in, 0.0);
                let g_top = &mut bufs[0][..];
                // SAFETY: AVX-512 F (amx::available() checked above implies it).
                unsafe {
                    top_backward(
                        top,
                        &dy[r0 * top.n_out..][..rows * top.n_out],
                        h_top,
                        &mut acc[nh],
                        &mut db[nh],
                        g_top,
                    )
                };
                let mut cur = 0;
                for l in (0..nh).rev() {
                    let layer = &hidden[l];
                    let (ni, no) = (layer.n_in, layer.n_out);
                    // h_{l−1} on this chunk: f32, or bf16 packed as dW's B (and the ReLU mask
                    // of the input gradient as it is).
                    let h_in = match (l, hs.get(l.wrapping_sub(1))) {
                        (0, _) => SavedRef::F32(x.rows(r0, rows, ni, &mut xbuf)),
                        (_, Some(SavedRef::F32(h))) => SavedRef::F32(&h[r0 * ni..][..rows * ni]),
                        (_, Some(SavedRef::Packed(h))) => {
                            let at = amx::rows_len(r0, ni);
                            SavedRef::Packed(&h[at..at + amx::rows_len(rows, ni)])
                        }
                        (_, None) => unreachable!("one saved output per hidden layer"),
                    };
                    // This layer's g, and where the next one goes (none below layer 0).
                    let [b0, b1] = &mut bufs;
                    let (g, next) = if cur == 0 { (b0, b1) } else { (b1, b0) };
                    if l > 0 {
                        next.resize(rows * ni, 0.0);
                    }
                    let (gc, next) = (&g[..rows * no], (l > 0).then_some(&mut next[..]));
                    if storing {
                        // (off is a multiple of rc, itself of 32: whole groups)
                        let dst = &mut gp[l][amx::at_len(off, no)..];
                        amx::pack_at_groups(gc, rows, no, dst);
                    } else {
                        let len = amx::rows_len(rows, no);
                        if l + 1 == nh {
                            // (the f32 output layer wrote it; the others are emitted below)
                            grows.resize(len, 0);
                            let gv = View {
                                buf: gc,
                                rs: no,
                                cs: 1,
                            };
                            amx::pack_rows(gv, rows, no, &mut grows);
                        }
                        let gt = AccA::RowsT(&grows[..len]);
                        let fresh = r0 == r_task;
                        match h_in {
                            SavedRef::Packed(p) => {
                                amx::accumulate_packed(no, rows, ni, gt, p, &mut acc[l], fresh)
                            }
                            SavedRef::F32(h_in) => {
                                let hv = View {
                                    buf: h_in,
                                    rs: ni,
                                    cs: 1,
                                };
                                let (a, s) = (&mut acc[l], &mut scratch);
                                amx::accumulate(no, rows, ni, gt, hv, a, fresh, s);
                            }
                        }
                    }
                    // SAFETY: AVX-512 F, as above.
                    unsafe { add_column_sums(gc, &mut db[l]) };
                    if let Some(next) = next {
                        // The next g is an A again only if layer l − 1 has an input gradient
                        // (l ≥ 2); this g came as tiles unless it is the top hidden layer's,
                        // which the f32 output layer wrote.
                        let emit_len = (l >= 2).then(|| amx::tiles_len(rows, ni));
                        let (tiles, emit) = tile_bufs(&mut tbufs, l, emit_len);
                        let g_tiles = (l + 1 < nh).then_some(tiles);
                        // (dW_l has read this g's rows: the next g's go in their place)
                        let emit_rows = (!storing).then(|| {
                            grows.resize(amx::rows_len(rows, ni), 0);
                            &mut grows[..]
                        });
                        let io = amx::RowsIo {
                            mask_rows: None,
                            emit,
                            emit_rows,
                        };
                        input_grad_rows(layer, &packed[l - 1], gc, g_tiles, h_in, rows, next, io);
                        cur = 1 - cur;
                    } else if summing {
                        // Σ g over this chunk's rows of each group, in row order.
                        let mut r = r0;
                        while r < r0 + rows {
                            let gi = r / group;
                            let end = ((gi + 1) * group).min(r0 + rows);
                            if gsums.last().is_none_or(|s| s.0 != gi) {
                                gsums.push((gi, vec![0f32; no]));
                            }
                            let s = &mut gsums.last_mut().expect("pushed above").1;
                            // SAFETY: AVX-512 F, as above.
                            unsafe { add_column_sums(&gc[(r - r0) * no..(end - r0) * no], s) };
                            r = end;
                        }
                    } else if let Some(d) = dxp.as_deref_mut() {
                        let d = &mut d[off * width..][..rows * width];
                        // SAFETY: AVX-512 F, as above.
                        unsafe { input_grad_columns(layer, col0, &w0c, wp, gc, d) };
                    }
                }
            }
            TILES.with(|t| t.replace(tbufs));
            GROWS.with(|t| t.replace(grows));
            XBUF.with(|t| t.replace(xbuf));
            (acc, db, gsums)
        })
        .collect();
    if let Some(gs) = gstore.as_deref() {
        // dW_l += Gᵀ·h_{l−1} over all N rows: the whole-matrix path's GEMM on the same operands
        // (G packed as that GEMM packs the view Gᵀ).
        for (l, layer) in hidden.iter().enumerate() {
            let (ni, no) = (layer.n_in, layer.n_out);
            let h_in: &[f32] = match (l, hs.get(l.wrapping_sub(1)), x) {
                (0, _, Input::Rows(x)) => x,
                (0, _, Input::Generated(_)) => panic!("mlp rows: stored g reads x whole"),
                (_, Some(SavedRef::F32(h)), _) => h,
                _ => panic!("mlp rows: stored g reads f32 saved outputs"),
            };
            let hv = View {
                buf: &h_in[..n * ni],
                rs: ni,
                cs: 1,
            };
            let done = amx::gemm_at(no, n, ni, gs[l], hv, 1.0, grads[l].0);
            assert!(done, "mlp rows: bf16 engine available (checked above)");
        }
    }
    if let Some(d) = grouped {
        // dx_group = (Σ_group g)·W_0[:, col0..] (+ Σ_group g[:, col0..] if residual), with the
        // group sums added up in task order.
        let mut gs = vec![0f32; n / group * l0.n_out];
        for (gi, s) in partial.iter().flat_map(|p| &p.2) {
            gs[gi * l0.n_out..][..l0.n_out]
                .iter_mut()
                .zip(s)
                .for_each(|(a, &b)| *a += b);
        }
        for (dr, gr) in d[..n / group * width]
            .chunks_exact_mut(width)
            .zip(gs.chunks_exact(l0.n_out))
        {
            for (k, &gk) in gr.iter().enumerate() {
                dr.iter_mut()
                    .zip(&w0c[k * wp..])
                    .for_each(|(a, &w)| *a += gk * w);
            }
            if l0.residual {
                dr.iter_mut().zip(&gr[col0..]).for_each(|(a, &b)| *a += b);
            }
        }
    }
    // dW += each task's sums in task order: row blocks of every layer in parallel (the same
    // order of additions per element as one pass over the tasks).
    let parts = &partial;
    grads
        .par_iter_mut()
        .enumerate()
        .filter(|(l, _)| !(storing && *l < nh))
        .flat_map(|(l, (dw, _))| {
            let layer = &layers[l];
            let ni = layer.n_in;
            dw[..layer.n_out * ni]
                .par_chunks_mut(REDUCE_ROWS * ni)
                .enumerate()
                .map(move |(c, rows)| (l, c, rows))
        })
        .for_each(|(l, c, rows)| {
            let ni = layers[l].n_in;
            // hidden layers' sums are padded to whole 32-column blocks, the output layer's not
            let np = if l < nh { ni.div_ceil(32) * 32 } else { ni };
            for (acc, _, _) in parts {
                for (i, row) in rows.chunks_exact_mut(ni).enumerate() {
                    let o = c * REDUCE_ROWS + i;
                    row.iter_mut()
                        .zip(&acc[l][o * np..])
                        .for_each(|(d, &a)| *d += a);
                }
            }
        });
    let mut pool = ACC_POOL.lock().unwrap_or_else(|e| e.into_inner());
    for (acc, db, _) in partial {
        for (l, dbl) in db.iter().enumerate() {
            grads[l].1.iter_mut().zip(dbl).for_each(|(d, &a)| *d += a);
        }
        for a in acc.into_iter().take(nh) {
            if pool.len() < POOL_MAX && a.capacity() > 0 {
                pool.push(a);
            }
        }
    }
    true
}

/// Rows of dW per job of [`backward`]'s parallel sum of the tasks' partial sums.
const REDUCE_ROWS: usize = 32;

/// At most this many partial-sum buffers are kept for reuse between calls.
const POOL_MAX: usize = 64;

/// [`backward`]'s per-task dW sums, kept between calls (their contents are not cleared).
static ACC_POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `len` floats from [`ACC_POOL`] (old contents, any values) or a new one.
fn pooled(len: usize) -> Vec<f32> {
    let mut v = ACC_POOL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    v.resize(len, 0.0);
    v
}

/// The next g on a chunk: (g·W_l (+ g)) ⊙ 1[h_{l−1} > 0] (W_l packed as B), written to `next`
/// (rows × n_in) as the whole-matrix path's GEMM writes it. g's bf16 tiles, when the layer
/// above emitted them, are the product's A; the next g is emitted as `io` says too. The mask
/// is that of h_{l−1} as saved, f32 or packed (its bf16 values).
#[allow(clippy::too_many_arguments)]
fn input_grad_rows(
    layer: &Layer<'_>,
    w: &PackedB,
    g: &[f32],
    g_tiles: Option<&[u16]>,
    h_in: SavedRef<'_>,
    rows: usize,
    next: &mut [f32],
    io: amx::RowsIo<'_>,
) {
    let (mask, mask_rows) = match h_in {
        SavedRef::F32(h) => (Some(h), None),
        SavedRef::Packed(p) => (None, Some(p)),
    };
    let epi = Epilogue {
        bias: None,
        residual: layer.residual.then_some(g),
        mask,
        relu: false,
    };
    let a = match g_tiles {
        Some(t) => RowsA::Tiles(t),
        None => RowsA::View(View {
            buf: g,
            rs: layer.n_out,
            cs: 1,
        }),
    };
    let io = amx::RowsIo { mask_rows, ..io };
    amx::gemm_rows(rows, a, w, epi, next, io);
}

/// The output layer on a chunk: dW += dyᵀ·h and db += Σ_rows dy (f32), and its input gradient
/// g = (dy·W (+ dy)) ⊙ 1[h > 0] into `g` as the whole-matrix path's short-k product writes it
/// (the k = n_out terms in order from 0, then [`epilogue_row`]).
///
/// # Safety
/// AVX-512 F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn top_backward(
    top: &Layer<'_>,
    dy: &[f32],
    h: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    g: &mut [f32],
) {
    let (ni, no) = (top.n_in, top.n_out);
    if !top.residual {
        match no {
            1 => return top_backward_fused::<1>(top, dy, h, dw, db, g),
            2 => return top_backward_fused::<2>(top, dy, h, dw, db, g),
            _ => {}
        }
    }
    let epi = Epilogue {
        bias: None,
        residual: top.residual.then_some(dy),
        mask: Some(h),
        relu: false,
    };
    for (i, ((dr, hr), gr)) in dy
        .chunks_exact(no)
        .zip(h.chunks_exact(ni))
        .zip(g.chunks_exact_mut(ni))
        .enumerate()
    {
        for (o, &d) in dr.iter().enumerate() {
            dw[o * ni..(o + 1) * ni]
                .iter_mut()
                .zip(hr)
                .for_each(|(w, &x)| *w += d * x);
            db[o] += d;
        }
        gr.fill(0.0);
        for (o, &d) in dr.iter().enumerate() {
            gr.iter_mut()
                .zip(&top.w[o * ni..(o + 1) * ni])
                .for_each(|(x, &w)| *x += d * w);
        }
        epilogue_row(&epi, 0.0, i, 0, ni, &[], gr);
    }
}

/// [`top_backward`] for `NO` outputs and no residual, in one pass over each row: per column
/// j, dW[o, j] += dy_o·h_j and g_j = Σ_o dy_o·W[o, j] (o in order from 0, as the short-k
/// product sums), then the ReLU-gradient mask, as [`epilogue_row`] applies it.
#[inline(always)]
fn top_backward_fused<const NO: usize>(
    top: &Layer<'_>,
    dy: &[f32],
    h: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    g: &mut [f32],
) {
    let ni = top.n_in;
    let w: [&[f32]; NO] = std::array::from_fn(|o| &top.w[o * ni..(o + 1) * ni]);
    let dwo: [&mut [f32]; NO] = {
        let mut rest = &mut dw[..NO * ni];
        std::array::from_fn(|_| {
            let (a, b) = std::mem::take(&mut rest).split_at_mut(ni);
            rest = b;
            a
        })
    };
    for ((dr, hr), gr) in dy
        .chunks_exact(NO)
        .zip(h.chunks_exact(ni))
        .zip(g.chunks_exact_mut(ni))
    {
        let d: [f32; NO] = std::array::from_fn(|o| dr[o]);
        for o in 0..NO {
            db[o] += d[o];
        }
        for j in 0..ni {
            let hj = hr[j];
            let mut s = 0f32;
            for o in 0..NO {
                dwo[o][j] += d[o] * hj;
                s += d[o] * w[o][j];
            }
            gr[j] = if hj <= 0.0 { 0.0 } else { s };
        }
    }
}

/// db += Σ_rows g (g: rows × db.len()).
///
/// # Safety
/// AVX-512 F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn add_column_sums(g: &[f32], db: &mut [f32]) {
    for row in g.chunks_exact(db.len()) {
        db.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
}

/// d (rows × (n_in − col0)) += g·W[:, col0..] (+ g[:, col0..] if residual), in f32: the few
/// columns of the decoder input's gradient that are asked for. `wc` holds W[:, col0..] as
/// n_out rows of `wp` (a multiple of 16, zero past the width).
///
/// # Safety
/// AVX-512 F.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
unsafe fn input_grad_columns(
    layer: &Layer<'_>,
    col0: usize,
    wc: &[f32],
    wp: usize,
    g: &[f32],
    d: &mut [f32],
) {
    let (ni, no) = (layer.n_in, layer.n_out);
    let width = ni - col0;
    // Eight rows at a time: eight independent accumulators share each load of W's row, where
    // one row alone is a chain of n_out dependent FMAs. Each row's sums run in the same order
    // either way (k = 0.. from zero), so the result does not depend on the blocking.
    let (gb, gt) = g.split_at(g.len() / (8 * no) * (8 * no));
    let (db, dt) = d.split_at_mut(gb.len() / no * width);
    for (gr, dr) in gb.chunks_exact(8 * no).zip(db.chunks_exact_mut(8 * width)) {
        grad_column_block::<8>(col0, no, width, layer.residual, wc, wp, gr, dr);
    }
    for (gr, dr) in gt.chunks_exact(no).zip(dt.chunks_exact_mut(width)) {
        grad_column_block::<1>(col0, no, width, layer.residual, wc, wp, gr, dr);
    }
}

/// [`input_grad_columns`] for `R` rows (`g`: R × no, `d`: R × width).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_column_block<const R: usize>(
    col0: usize,
    no: usize,
    width: usize,
    residual: bool,
    wc: &[f32],
    wp: usize,
    g: &[f32],
    d: &mut [f32],
) {
    for j0 in (0..width).step_by(16) {
        let mut v = [[0f32; 16]; R];
        for k in 0..no {
            let w: &[f32; 16] = wc[k * wp + j0..][..16].try_into().expect("16 wide");
            for (r, vr) in v.iter_mut().enumerate() {
                let gk = g[r * no + k];
                for l in 0..16 {
                    vr[l] += gk * w[l];
                }
            }
        }
        let n = (width - j0).min(16);
        for (r, vr) in v.iter().enumerate() {
            d[r * width + j0..r * width + j0 + n]
                .iter_mut()
                .zip(vr)
                .for_each(|(a, &b)| *a += b);
        }
    }
    if residual {
        for (dr, gr) in d.chunks_exact_mut(width).zip(g.chunks_exact(no)) {
            dr.iter_mut().zip(&gr[col0..]).for_each(|(a, &b)| *a += b);
        }
    }
}
