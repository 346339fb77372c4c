"""Goldens of `analyze-convergence` made by cryoDRGN 4.3.1's own functions
(cryodrgn.commands_utils.analyze_convergence), for tests/convergence.rs.

Run with the reference's venv:  ~/refvenv/bin/python tools/convergence_goldens.py
Inputs come from ../shared/data (zvals_het-8_4k.pkl, toymodel_small_nocenter.mrc) and small
deterministic changes of them, saved beside the goldens in tests/fixtures/convergence/.
"""
import os
import pickle
import sys
import tempfile

import numpy as np

from cryodrgn import utils
from cryodrgn.source import ImageSource, write_mrc
from cryodrgn.commands_utils import analyze_convergence as ac

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
shared = os.path.join(root, "..", "shared", "data")
out = os.path.join(root, "tests", "fixtures", "convergence")
os.makedirs(out, exist_ok=True)


def save(name, obj):
    with open(os.path.join(out, name), "wb") as f:
        pickle.dump(obj, f)


z = utils.load_pkl(os.path.join(shared, "zvals_het-8_4k.pkl")).astype(np.float32)
rng = np.random.default_rng(0)

with tempfile.TemporaryDirectory() as work:
    # 1. latent shifts over z.0 … z.3 (500 particles, 8-D): rows for epochs 0-1-2 and 1-2-3
    zs = [z[:500]]
    for k in range(3):
        zs.append((zs[-1] + rng.normal(0, 0.2 / (k + 1), zs[-1].shape)).astype(np.float32))
    for k, zk in enumerate(zs):
        utils.save_pkl(zk, os.path.join(work, f"z.{k}.pkl"))
        save(f"z.{k}.pkl", zk)
    os.makedirs(os.path.join(work, "plots"), exist_ok=True)
    ac.encoder_latent_shifts(work, work, 3)
    save("vector_metrics.pkl", utils.load_pkl(os.path.join(work, "vector_metrics.pkl")))

    # 2. the sketch of a 2-D point set (the first two latent dims as the "UMAP"), smoothed and not,
    #    and the representative latents of its maxima
    umap = z[:, :2].copy()
    os.makedirs(os.path.join(work, "umaps"), exist_ok=True)
    os.makedirs(os.path.join(work, "repr_particles"), exist_ok=True)
    utils.save_pkl(umap, os.path.join(work, "umaps", "umap.7.pkl"))
    for smooth in (True, False):
        mask, labels = ac.sketch_via_umap_local_maxima(work, 7, smooth=smooth)
        save(f"sketch_mask_{'smooth' if smooth else 'raw'}.pkl", mask)
    mask, labels = ac.sketch_via_umap_local_maxima(work, 7)
    utils.save_pkl(list(range(len(z))), os.path.join(work, "ind_subset.pkl"))
    utils.save_pkl(z, os.path.join(work, "z.7.pkl"))
    # (its plot needs two epochs or more: epoch 8 is a copy)
    utils.save_pkl(z, os.path.join(work, "z.8.pkl"))
    utils.save_pkl(umap, os.path.join(work, "umaps", "umap.8.pkl"))
    ac.follow_candidate_particles(work, work, np.array([7, 8]), z.shape[1], mask, labels)
    rep = np.loadtxt(os.path.join(work, "repr_particles", "latent_representative.7.txt"))
    save("latent_representative.pkl", rep)

    # 3. mask, masked CC and FSC of two volumes
    vol = np.array(ImageSource.from_file(os.path.join(shared, "toymodel_small_nocenter.mrc")).images())
    vol2 = (0.8 * np.roll(vol, 1, axis=0) + 0.2 * vol + rng.normal(0, 0.05 * vol.std(), vol.shape)).astype(np.float32)
    p1, p2 = os.path.join(work, "v1.mrc"), os.path.join(work, "v2.mrc")
    write_mrc(p1, vol.astype(np.float32), Apix=1.0)
    write_mrc(p2, vol2, Apix=1.0)
    write_mrc(os.path.join(out, "vol2.mrc"), vol2, Apix=1.0)
    for p, name in ((p1, "vol1"), (p2, "vol2")):
        ac.mask_volume(p, p.replace(".mrc", ".masked.mrc"), 1.0)
        m = np.array(ImageSource.from_file(p.replace(".mrc", ".masked.mrc")).images())
        save(f"{name}.masked.pkl", m.astype(np.float32))
    # CC and FSC through the reference's functions: vols.{e}/vol_000.masked.mrc
    for e, p in ((1, p1), (2, p2)):
        d = os.path.join(work, f"vols.{e}")
        os.makedirs(d, exist_ok=True)
        os.replace(p.replace(".mrc", ".masked.mrc"), os.path.join(d, "vol_000.masked.mrc"))
    colors = np.ones((10, 3)) * 0.5
    ac.calculate_CCs(work, np.array([1, 2]), ["A"], colors)
    save("cc_masked.pkl", utils.load_pkl(os.path.join(work, "cc_masked.pkl")))
    # its FSC plot needs a 2-D grid of panels: three labels (the same volumes thrice)
    for e in (1, 2):
        d = os.path.join(work, f"vols.{e}")
        for k in (1, 2):
            os.link(os.path.join(d, "vol_000.masked.mrc"), os.path.join(d, f"vol_00{k}.masked.mrc"))
    ac.calculate_FSCs(work, np.array([1, 2]), ["A", "B", "C"], vol.shape[0], colors)
    save("fsc_masked.pkl", utils.load_pkl(os.path.join(work, "fsc_masked.pkl")))
    save("fsc_xaxis.pkl", utils.load_pkl(os.path.join(work, "fsc_xaxis.pkl")))
print("goldens in", out, file=sys.stderr)
