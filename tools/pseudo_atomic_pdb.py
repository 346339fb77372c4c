#!/usr/bin/env python3
"""Pseudo-atomic multi-domain protein ensembles as multi-model PDB files (issue 25).

Each model is one chain of residues with N, CA, C, O and (except every 7th residue, a glycine) CB
heavy atoms. A domain is a bundle of up/down alpha-helices (CA on a helix of radius 2.3 A, 100 deg
and 1.5 A per residue; helix axes on a circle of radius 8 A) joined by short loops; the domains lie
along x and are joined by linkers. Models differ structurally and continuously: domain d+1 (and
everything after it) rotates about a hinge between domains d and d+1 by a per-model angle drawn
uniformly in [-max-angle, max-angle] (hinge 1 about y, hinge 2 about z, hinge 3 about x, ...); each
bundle breathes (its helix-axis radius scaled by 1 +/- 4 %), and every atom gets 0.05 A of Gaussian
jitter. With the defaults (3 domains x 5 helices x 22 residues) a model holds about 1800 heavy atoms.

--hydrogens, --waters N and --altlocs add what pc-prepare must drop (an H on every N, N water
oxygens, and a B alternate location of every 10th CB after an A one); they draw from their own
random stream, so the heavy atoms are the same with or without them.

Python 3 standard library only.

Example: python3 tools/pseudo_atomic_pdb.py --models 20 --seed 0 -o ensemble.pdb

Legacy form (BENCHMARKS.md, pose-accuracy runs; needs numpy): `tools/pseudo_atomic_pdb.py
N_RESIDUES SEED OUT.pdb` writes one pseudo-protein: a self-avoiding C-alpha random walk (3.8 A
steps, no two of the last 60 C-alpha closer than 3.6 A) inside an asymmetric union of three balls
(radii 30, 18, 14 A), with N, C, O and CB pseudo-atoms at 1.5 A from each C-alpha in random
directions; unchanged from its first version.
"""

import argparse
import math
import os
import random
import sys

RESIDUES = ["ALA", "LEU", "GLU", "LYS", "ARG", "ILE", "SER", "VAL", "ASP", "GLN", "THR"]

# (name, radius A, phase offset deg, rise offset A) of backbone atoms relative to the CA helix
BACKBONE = [
    ("N", 1.55, -28.0, -0.80),
    ("CA", 2.30, 0.0, 0.0),
    ("C", 1.65, 28.0, 0.80),
    ("O", 2.00, 40.0, 2.00),
]
CB = ("CB", 3.30, 0.0, -0.60)


def rot(axis, angle):
    """Rotation matrix (row-major lists) about a unit axis by angle (radians)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    t = 1 - c
    return [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]


def apply(m, p, center):
    d = [p[i] - center[i] for i in range(3)]
    return [center[i] + sum(m[i][j] * d[j] for j in range(3)) for i in range(3)]


def helix_residue(axis_xy, up, k, n_res, breathe, glycine):
    """Atoms (name, xyz) of residue k of a helix whose axis passes through axis_xy."""
    ax, ay = axis_xy[0] * breathe, axis_xy[1] * breathe
    z0 = -0.75 * (n_res - 1)
    atoms = []
    for name, r, ph, dz in BACKBONE + ([] if glycine else [CB]):
        th = math.radians(100.0 * k + ph)
        z = z0 + 1.5 * k + dz
        if not up:
            z, th = -z, -th
        atoms.append((name, [ax + r * math.cos(th), ay + r * math.sin(th), z]))
    return atoms


def loop_residues(p0, p1, n, bulge):
    """n residues interpolated between CA positions p0 and p1, bulging by `bulge` along z."""
    out = []
    for i in range(1, n + 1):
        t = i / (n + 1)
        ca = [p0[j] + t * (p1[j] - p0[j]) for j in range(3)]
        ca[2] += bulge * math.sin(math.pi * t)
        out.append([
            ("N", [ca[0] - 0.9, ca[1] + 0.6, ca[2] - 0.5]),
            ("CA", ca),
            ("C", [ca[0] + 0.9, ca[1] + 0.6, ca[2] + 0.5]),
            ("O", [ca[0] + 1.2, ca[1] + 1.7, ca[2] + 0.9]),
            ("CB", [ca[0], ca[1] - 1.5, ca[2]]),
        ])
    return out


def build_model(args, angles, breathes, rng):
    """Residues (lists of (name, xyz)) of one model and the domain index of each residue."""
    residues, domain_of = [], []
    spacing = 26.0
    res_counter = 0
    for d in range(args.domains):
        cx = d * spacing
        prev_end = None
        nh = args.helices
        for h in range(nh):
            phi = 2 * math.pi * h / nh
            axis = (8.0 * math.cos(phi), 8.0 * math.sin(phi))
            up = h % 2 == 0
            helix = []
            for k in range(args.helix_len):
                gly = (res_counter % 7) == 6
                res_counter += 1
                atoms = helix_residue(axis, up, k, args.helix_len, breathes[d], gly)
                helix.append([(n, [p[0] + cx, p[1], p[2]]) for n, p in atoms])
            if prev_end is not None:
                start = dict(helix[0])["CA"]
                bulge = 3.0 if prev_end[2] > 0 else -3.0
                for r in loop_residues(prev_end, start, 3, bulge):
                    residues.append(r)
                    domain_of.append(d)
            for r in helix:
                residues.append(r)
                domain_of.append(d)
            prev_end = dict(helix[-1])["CA"]
    # hinges: domain d+1 and all after it rotate about the point between domains d and d+1
    hinge_axes = [(0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0)]
    for h in range(args.domains - 1):
        m = rot(hinge_axes[h % 3], angles[h])
        center = [(h + 0.5) * spacing, 0.0, 0.0]
        for i, r in enumerate(residues):
            if domain_of[i] > h:
                residues[i] = [(n, apply(m, p, center)) for n, p in r]
    # linkers between the last residue of domain d and the first of domain d+1
    out, out_dom = [], []
    for i, r in enumerate(residues):
        if i > 0 and domain_of[i] != domain_of[i - 1]:
            for lr in loop_residues(dict(residues[i - 1])["CA"], dict(r)["CA"], 4, 2.0):
                out.append(lr)
                out_dom.append(-1)
        out.append(r)
        out_dom.append(domain_of[i])
    for r in out:
        for _, p in r:
            for j in range(3):
                p[j] += rng.gauss(0.0, 0.05)
    return out


def atom_line(serial, name, alt, res, resseq, xyz, element, het=False):
    label = name if len(name) >= 4 else " " + name
    rec = "HETATM" if het else "ATOM  "
    return "%s%5d %-4s%1s%3s A%4d    %8.3f%8.3f%8.3f%6.2f%6.2f          %2s" % (
        rec, serial % 100000, label, alt, res, resseq % 10000, xyz[0], xyz[1], xyz[2],
        0.5 if alt else 1.0, 20.0, element)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=10, help="number of models S")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domains", type=int, default=3, choices=[2, 3, 4])
    ap.add_argument("--helices", type=int, default=5, help="helices per domain")
    ap.add_argument("--helix-len", type=int, default=22, help="residues per helix")
    ap.add_argument("--max-angle", type=float, default=35.0, help="hinge angle range (deg)")
    ap.add_argument("--hydrogens", action="store_true", help="add an H on every N")
    ap.add_argument("--waters", type=int, default=0, help="water oxygens (HOH) per model")
    ap.add_argument("--altlocs", action="store_true", help="A/B alternate CBs on every 10th residue")
    ap.add_argument("-o", "--out", required=True, help="output .pdb")
    a = ap.parse_args(argv)
    if a.models < 1 or a.helices < 1 or a.helix_len < 2:
        ap.error("--models, --helices must be >= 1 and --helix-len >= 2")
    rng = random.Random(a.seed)
    extra = random.Random(a.seed + 7919)
    lines = ["REMARK   pseudo-atomic %d-domain ensemble, seed %d" % (a.domains, a.seed)]
    for mi in range(a.models):
        angles = [math.radians(rng.uniform(-a.max_angle, a.max_angle)) for _ in range(a.domains - 1)]
        breathes = [1.0 + rng.uniform(-0.04, 0.04) for _ in range(a.domains)]
        residues = build_model(a, angles, breathes, rng)
        lines.append("MODEL     %4d" % (mi + 1))
        lines.append("REMARK   hinge angles (deg) %s" % " ".join("%.2f" % math.degrees(t) for t in angles))
        serial = 1
        for ri, r in enumerate(residues):
            names = [n for n, _ in r]
            resname = RESIDUES[ri % len(RESIDUES)] if "CB" in names else "GLY"
            for n, p in r:
                if a.altlocs and n == "CB" and ri % 10 == 0:
                    lines.append(atom_line(serial, n, "A", resname, ri + 1, p, "C"))
                    q = [p[0] + 0.4, p[1] - 0.3, p[2] + 0.2]
                    lines.append(atom_line(serial + 1, n, "B", resname, ri + 1, q, "C"))
                    serial += 2
                    continue
                lines.append(atom_line(serial, n, "", resname, ri + 1, p, n[0]))
                serial += 1
                if a.hydrogens and n == "N":
                    h = [p[0] + extra.uniform(-1, 1), p[1] + 1.0, p[2]]
                    lines.append(atom_line(serial, "H", "", resname, ri + 1, h, "H"))
                    serial += 1
        for w in range(a.waters):
            p = [extra.uniform(-10, 60), extra.uniform(-20, 20), extra.uniform(-25, 25)]
            lines.append(atom_line(serial, "O", "", "HOH", 5000 + w, p, "O", het=True))
            serial += 1
        lines.append("ENDMDL")
    lines.append("END")
    with open(a.out + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(a.out + ".tmp", a.out)
    n_heavy = sum(len(r) for r in residues)
    print("wrote %s: %d models, %d residues, %d heavy atoms per model" % (
        a.out, a.models, len(residues), n_heavy), file=sys.stderr)


def legacy_main(n, seed, out):
    """The original random-walk pseudo-protein (numpy), kept byte-for-byte reproducible."""
    import numpy as np

    rng = np.random.default_rng(seed)
    balls = [(np.array([0.0, 0.0, 0.0]), 30.0),
             (np.array([28.0, 10.0, -6.0]), 18.0),
             (np.array([-12.0, -26.0, 14.0]), 14.0)]

    def inside(p):
        return any(np.linalg.norm(p - c) <= r for c, r in balls)

    ca = [np.zeros(3)]
    tries = 0
    while len(ca) < n:
        d = rng.normal(size=3)
        p = ca[-1] + d * 3.8 / np.linalg.norm(d)
        tries += 1
        if tries > 200:  # boxed in: restart the chain at a random point of the shape
            c, r = balls[rng.integers(3)]
            p = c + rng.uniform(-r, r, 3)
            tries = 0
        if not inside(p):
            continue
        recent = np.array(ca[-60:])
        if len(ca) > 1 and np.min(np.linalg.norm(recent[:-1] - p, axis=1)) < 3.6:
            continue
        ca.append(p)
        tries = 0

    def offset():
        v = rng.normal(size=3)
        return 1.5 * v / np.linalg.norm(v)

    with open(out, "w") as f:
        k = 1
        for i, p in enumerate(ca):
            for name, el in (("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O"), ("CB", "C")):
                q = p if name == "CA" else p + offset()
                f.write("ATOM  %5d  %-3s ALA A%4d    %8.3f%8.3f%8.3f  1.00 20.00           %s\n"
                        % (k % 100000, name, (i + 1) % 10000, q[0], q[1], q[2], el))
                k += 1
        f.write("END\n")
    print(f"{len(ca)} residues, {5 * len(ca)} atoms -> {out}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and all(not x.startswith("-") for x in sys.argv[1:]):
        legacy_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    else:
        main()
