#!/usr/bin/env python3
"""A pseudo-protein for pose-accuracy tests: a PDB with atomic detail but no real structure.

The test volume the repository ships (hand-vol.mrc) is smooth: at SNR 0.1 it leaves so little
high-frequency signal that even a search against the true volume misses the paper's Table 1
rotation error. Table 1 used an atomic model. This writes a stand-in with a protein's density
statistics: a self-avoiding C-alpha random walk (3.8 A steps, no two of the last 60 C-alpha
closer than 3.6 A) inside an asymmetric union of three balls (radii 30, 18, 14 A), with N, C, O
and CB pseudo-atoms at 1.5 A from each C-alpha in random directions. No symmetry, a definite
hand. Render it with `cryofield pdb2mrc`.

Usage: tools/pseudo_atomic_pdb.py N_RESIDUES SEED OUT.pdb     (numpy; seeded, reproducible)
"""
import sys

import numpy as np


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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
    main()
