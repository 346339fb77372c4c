#!/usr/bin/env python3
"""Helpers of tools/pc_protein_bench.sh (issue 25). Python 3 standard library only.

split ENSEMBLE.pdb OUTDIR NVAL NTEST
    Split a multi-model PDB by model index: the first S-NVAL-NTEST models -> OUTDIR/train.pdb
    (multi-model), the next NVAL -> OUTDIR/val/NNN.pdb, the last NTEST -> OUTDIR/test/NNN.pdb
    (one model each; NNN is the 0-based model index in the ensemble).
agg ROOT METHOD [METHOD ...]
    ROOT/<instance>/<METHOD>/metrics.json -> one JSON line per method with the mean and the
    population std over instances of each instance's mean over its samples.
table ROOT LABEL=METHOD [LABEL=METHOD ...]
    Markdown table of the same, plus how often the first method beats each other one per instance.
"""
import json
import math
import os
import sys

KEYS = ["rmsd_subsampled_A", "rmsd_atomic_A", "cd", "emd", "E"]


def split(ens, out, nval, ntest):
    models, cur = [], None
    with open(ens) as f:
        for line in f:
            if line.startswith("MODEL"):
                cur = []
            elif line.startswith("ENDMDL"):
                models.append(cur)
                cur = None
            elif cur is not None and line.startswith(("ATOM", "HETATM", "TER")):
                cur.append(line)
    s = len(models)
    ntr = s - nval - ntest
    assert ntr > 0, "not enough models"
    os.makedirs(os.path.join(out, "val"), exist_ok=True)
    os.makedirs(os.path.join(out, "test"), exist_ok=True)
    with open(os.path.join(out, "train.pdb"), "w") as f:
        for i in range(ntr):
            f.write("MODEL     %4d\n" % (i + 1))
            f.writelines(models[i])
            f.write("ENDMDL\n")
        f.write("END\n")
    for i in range(ntr, s):
        sub = "val" if i < ntr + nval else "test"
        with open(os.path.join(out, sub, "%03d.pdb" % i), "w") as f:
            f.writelines(models[i])
            f.write("END\n")
    print("split %d models: %d train, %d val, %d test" % (s, ntr, nval, ntest))


def collect(root, method):
    rows = []
    for inst in sorted(os.listdir(root)):
        p = os.path.join(root, inst, method, "metrics.json")
        if os.path.isfile(p):
            with open(p) as f:
                m = json.load(f)["mean"]
            rows.append((inst, {k: m.get(k) for k in KEYS}))
    return rows


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, 0
    mu = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals))
    return mu, sd, len(vals)


def agg(root, methods):
    for meth in methods:
        rows = collect(root, meth)
        res = {"method": meth, "instances": len(rows)}
        for k in KEYS:
            mu, sd, _ = stats([r[k] for _, r in rows])
            res[k] = mu
            res[k + "_std"] = sd
        print(json.dumps(res))


def fmt(mu, sd, k):
    if mu is None:
        return "–"
    if k == "cd":
        return "%.2f ± %.2f" % (mu * 1e3, sd * 1e3)
    if k == "emd":
        return "%.2f ± %.2f" % (mu * 1e2, sd * 1e2)
    if k == "E":
        return "%.3g ± %.2g" % (mu, sd)
    return "%.2f ± %.2f" % (mu, sd)


def table(root, pairs):
    labels = [p.rsplit("=", 1) for p in pairs]
    data = [(lab, collect(root, meth)) for lab, meth in labels]
    print("| method | instances | RMSD subsampled (Å) | RMSD atomic (Å) | CD ×10³ | EMD ×10² | E |")
    print("|---|---|---|---|---|---|---|")
    for lab, rows in data:
        cells = [fmt(*stats([r[k] for _, r in rows])[:2], k) for k in KEYS]
        print("| %s | %d | %s |" % (lab, len(rows), " | ".join(cells)))
    if len(data) > 1:
        ref_lab, ref = data[0]
        refd = dict(ref)
        print()
        for lab, rows in data[1:]:
            wins = []
            for k in ["rmsd_subsampled_A", "rmsd_atomic_A", "cd", "emd"]:
                n = w = 0
                for inst, r in rows:
                    a, b = refd.get(inst, {}).get(k), r[k]
                    if a is not None and b is not None:
                        n += 1
                        w += a < b
                wins.append("%s %d/%d" % (k, w, n))
            print("%s lower than %s per instance: %s  " % (ref_lab, lab, ", ".join(wins)))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "split":
        split(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "agg":
        agg(sys.argv[2], sys.argv[3:])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
