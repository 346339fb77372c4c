#!/usr/bin/env bash
# Cross-check the export commands against the reference (cryoDRGN 4.3.1): files written by our
# write-star / write-cs / filter-cs are parsed with the reference's own parse_pose_star,
# parse_ctf_star, parse_pose_csparc, parse_ctf_csparc (and np.load), and the result compared
# with numpy to the poses and CTF we wrote (max |diff| printed). Two pose sets on hand.mrcs
# (100 images, D = 64): the fixture's hand_rot_trans.pkl and a synthetic set holding the awkward
# cases (tilt 0° and 180°, half turns, identity) among random rotations. Also: the reference's
# write_star of the same inputs parses to the same poses as ours; filter_cs, select_random,
# select_clusters (its --sel counts from 1), filter_pkl and concat_pkls give the same arrays.
# The reference is a tool-time check only.
# Usage: tools/export_crosscheck.sh   (needs tools/setup_reference.sh first; CRYOFIELD_BIN=path skips
# the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$PWD/../shared/data
REF=${CRYODRGN_VENV:-$HOME/refvenv}
if [ -n "${CRYOFIELD_BIN:-}" ]; then B=$(realpath "$CRYOFIELD_BIN"); else
  cargo build --release -q; B=$PWD/target/release/cryofield; fi
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; cd "$W"
q() { "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }; }

"$REF/bin/python" - "$DATA" <<'PY'
import pickle, sys, numpy as np
from scipy.spatial.transform import Rotation
rng = np.random.default_rng(0)
n = 100
ctf = np.zeros((n, 9), np.float32)
ctf[:, 0] = 64; ctf[:, 1] = 1.5
ctf[:, 2] = rng.uniform(8000, 25000, n); ctf[:, 3] = ctf[:, 2] - rng.uniform(0, 500, n)
ctf[:, 4] = rng.uniform(-180, 180, n); ctf[:, 5] = np.where(np.arange(n) % 3 == 0, 200, 300)
ctf[:, 6] = 2.7; ctf[:, 7] = 0.1; ctf[:, 8] = rng.uniform(0, 90, n)
pickle.dump(ctf, open("ctf.pkl", "wb"))
R = Rotation.random(n, random_state=1).as_matrix()
def relion(a, b, c):  # cryoDRGN's R_from_relion
    from cryodrgn.utils import R_from_relion
    return R_from_relion(np.array([[a, b, c]], float))[0]
edge = [relion(30, 0, 40), relion(-120, 180, 10), relion(0, 0, 0), relion(75, 1e-4, -20),
        Rotation.from_rotvec([np.pi, 0, 0]).as_matrix(), Rotation.from_rotvec([0, 0, np.pi]).as_matrix(),
        Rotation.from_rotvec(np.pi * np.array([1, 1, 1]) / np.sqrt(3)).as_matrix(), np.eye(3)]
R[:len(edge)] = edge
t = rng.uniform(-0.1, 0.1, (n, 2))
pickle.dump((R.astype(np.float32), t.astype(np.float32)), open("edge_pose.pkl", "wb"))
pickle.dump(np.array([42, 7, 99, 0, 7, 13]), open("ind.pkl", "wb"))
pickle.dump(np.array([5, 2, 2018, 2, 1000]), open("ind_cs.pkl", "wb"))
pickle.dump(rng.integers(0, 4, 50), open("labels.pkl", "wb"))
PY

for P in hand edge; do
  POSE=$([ $P = hand ] && echo "$DATA/hand_rot_trans.pkl" || echo edge_pose.pkl)
  q "$B" write-star "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" -o "$P.star"
  q "$B" write-star "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" --relion30 -o "$P.r30.star"
  q "$B" write-star "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" --ind ind.pkl -o "$P.ind.star"
  q "$B" write-cs "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" -o "$P.cs"
  q "$B" write-cs "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" --ind ind.pkl -o "$P.ind.cs"
  for S in "$P.star" "$P.r30.star" "$P.ind.star"; do
    q "$REF/bin/cryodrgn" parse_pose_star "$S" -o "ref.pose.$S.pkl"
    q "$REF/bin/cryodrgn" parse_ctf_star "$S" -o "ref.ctf.$S.pkl"
    q "$B" parse-pose-star "$S" -o "our.pose.$S.pkl"
  done
  for S in "$P.cs" "$P.ind.cs"; do
    q "$REF/bin/cryodrgn" parse_pose_csparc "$S" -o "ref.pose.$S.pkl"
    q "$REF/bin/cryodrgn" parse_ctf_csparc "$S" -o "ref.ctf.$S.pkl"
    q "$B" parse-pose-csparc "$S" -o "our.pose.$S.pkl"
  done
  # The reference's own write_star (origins in pixels, names without zero padding).
  q "$REF/bin/cryodrgn_utils" write_star "$DATA/hand.mrcs" --ctf ctf.pkl --poses "$POSE" -o "$P.refw.star"
  q "$REF/bin/cryodrgn" parse_pose_star "$P.refw.star" -D 64 -o "ref.pose.$P.refw.star.pkl"
  cp "$POSE" "$P.input_pose.pkl"
done
# A .star input with an optics table, and filter_cs.
q "$B" write-star "$DATA/relion31.star" --ind <("$REF/bin/python" -c 'import pickle,sys,numpy as np; sys.stdout.buffer.write(pickle.dumps(np.array([4,1,3])))') -o r31.star
q "$REF/bin/cryodrgn" parse_pose_star "$DATA/relion31.star" -o ref.pose.r31.all.pkl
q "$REF/bin/cryodrgn" parse_ctf_star "$DATA/relion31.star" -o ref.ctf.r31.all.pkl
q "$REF/bin/cryodrgn" parse_pose_star r31.star -o ref.pose.r31.pkl
q "$REF/bin/cryodrgn" parse_ctf_star r31.star -o ref.ctf.r31.pkl
q "$B" filter-cs "$DATA/cryosparc_P12_J24_001_particles.cs" --ind ind_cs.pkl -o ours_f.cs
q "$REF/bin/cryodrgn_utils" filter_cs "$DATA/cryosparc_P12_J24_001_particles.cs" --ind ind_cs.pkl -o ref_f.cs
# Index utilities.
for SEED in 0 7 123; do
  q "$B" select-random 1000 -n 137 -s $SEED -o "our_rand$SEED.pkl" --neg-o "our_rand$SEED.neg.pkl"
  q "$REF/bin/cryodrgn_utils" select_random 1000 -n 137 --seed $SEED -o "ref_rand$SEED.pkl" -s "ref_rand$SEED.neg.pkl"
done
q "$B" select-clusters labels.pkl --sel 0 2 -o our_clu.pkl
q "$REF/bin/cryodrgn_utils" select_clusters labels.pkl --sel 1 3 -o ref_clu.pkl
q "$B" filter-pkl "$DATA/toy_rot_trans.pkl" --ind ind.pkl -o our_fp.pkl
q "$REF/bin/cryodrgn_utils" filter_pkl "$DATA/toy_rot_trans.pkl" --ind ind.pkl -o ref_fp.pkl
q "$B" concat-pkls ctf.pkl "$DATA/test_ctf.pkl" -o our_cat.pkl
q "$REF/bin/cryodrgn_utils" concat_pkls ctf.pkl "$DATA/test_ctf.pkl" -o ref_cat.pkl

"$REF/bin/python" - <<'PY'
import pickle, numpy as np
L = lambda f: pickle.load(open(f, "rb"))
ctf = L("ctf.pkl"); ind = L("ind.pkl")
worst = {}
def rep(name, v, tol):
    print(f"{name:<62s} {v:.3g}")
    worst[name] = (v, tol)
for P in ["hand", "edge"]:
    R, t = L(f"{P}.input_pose.pkl")
    for S, sel in [(f"{P}.star", slice(None)), (f"{P}.r30.star", slice(None)), (f"{P}.ind.star", ind)]:
        r, tr = L(f"ref.pose.{S}.pkl"); c = L(f"ref.ctf.{S}.pkl")
        rep(f"{S}: reference parse_pose_star rot max|diff|", np.abs(r - R[sel]).max(), 1e-5)
        rep(f"{S}: reference parse_pose_star trans max|diff|", np.abs(tr - t[sel]).max(), 1e-6)
        rep(f"{S}: reference parse_ctf_star max|diff|", np.abs(c - ctf[sel]).max(), 1e-3)
        o, ot = L(f"our.pose.{S}.pkl")
        rep(f"{S}: ours vs reference parse_pose_star rot", np.abs(o - r).max(), 1e-6)
    for S, sel in [(f"{P}.cs", slice(None)), (f"{P}.ind.cs", ind)]:
        r, tr = L(f"ref.pose.{S}.pkl"); c = L(f"ref.ctf.{S}.pkl")
        rep(f"{S}: reference parse_pose_csparc rot max|diff|", np.abs(r - R[sel]).max(), 1e-5)
        rep(f"{S}: reference parse_pose_csparc trans max|diff|", np.abs(tr - t[sel]).max(), 1e-6)
        rel = np.abs(c - ctf[sel]) / np.maximum(np.abs(ctf[sel]), 1)
        rep(f"{S}: reference parse_ctf_csparc max rel|diff|", rel.max(), 1e-6)
        o, ot = L(f"our.pose.{S}.pkl")
        rep(f"{S}: ours vs reference parse_pose_csparc rot", np.abs(o - r).max(), 1e-6)
    r, tr = L(f"ref.pose.{P}.refw.star.pkl")
    rep(f"{P}: reference write_star→parse rot vs input (its own round trip)", np.abs(r - R).max(), 1e-4)
r_all, t_all = L("ref.pose.r31.all.pkl"); r, t = L("ref.pose.r31.pkl")
rep("relion31.star --ind [4,1,3]: rot vs reference parse of the input", np.abs(r - r_all[[4, 1, 3]]).max(), 0)
rep("relion31.star --ind [4,1,3]: trans", np.abs(t - t_all[[4, 1, 3]]).max(), 0)
rep("relion31.star --ind [4,1,3]: ctf", np.abs(L("ref.ctf.r31.pkl") - L("ref.ctf.r31.all.pkl")[[4, 1, 3]]).max(), 0)
a, b = np.load("ours_f.cs"), np.load("ref_f.cs")
same = a.dtype == b.dtype and a.tobytes() == b.tobytes()
rep("filter-cs vs reference filter_cs (0 = identical dtype and bytes)", 0.0 if same else 1.0, 0)
for s in [0, 7, 123]:
    d = int(not (np.array_equal(L(f"our_rand{s}.pkl"), L(f"ref_rand{s}.pkl"))
                 and np.array_equal(L(f"our_rand{s}.neg.pkl"), L(f"ref_rand{s}.neg.pkl"))))
    rep(f"select-random seed {s} vs reference (0 = same indices)", d, 0)
rep("select-clusters --sel 0 2 vs reference --sel 1 3 (0 = same)", int(not np.array_equal(L("our_clu.pkl"), L("ref_clu.pkl"))), 0)
o, r = L("our_fp.pkl"), L("ref_fp.pkl")
rep("filter-pkl pose tuple vs reference (max|diff|)", max(np.abs(x - y).max() for x, y in zip(o, r)), 0)
rep("concat-pkls vs reference (max|diff|)", np.abs(L("our_cat.pkl") - L("ref_cat.pkl")).max(), 0)
bad = [k for k, (v, tol) in worst.items() if not v <= tol]
print("FAILED:" if bad else "all within tolerance", *bad, sep="\n  " if bad else "")
raise SystemExit(1 if bad else 0)
PY
