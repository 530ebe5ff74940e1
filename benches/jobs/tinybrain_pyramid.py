#!/usr/bin/env python3
"""The script a user would write instead of `tessera pyramid --levels N`: load the (z, y, x)
.npy, build N levels of 2x2x2 mode downsampling with tinybrain, save each as OUT/s1.npy ... sN.npy
((z, y, x), C order, the dtype of the input: what tessera writes).

    python tinybrain_pyramid.py INPUT.npy OUT_DIR [LEVELS=5]

tinybrain is single-threaded. It is given the (x, y, z) Fortran-order view of the array (its
fast path, as CloudVolume hands it in; the C-order path is several times slower), and each
level's transpose is again (z, y, x) in C order, so np.save writes it without a copy."""
import os
import sys

import numpy as np
import tinybrain

src, out_dir = sys.argv[1], sys.argv[2]
levels = int(sys.argv[3]) if len(sys.argv) > 3 else 5
a = np.load(src)
os.makedirs(out_dir, exist_ok=True)
mips = tinybrain.downsample_segmentation(a.T, (2, 2, 2), num_mips=levels)
for i, m in enumerate(mips, 1):
    np.save(os.path.join(out_dir, f"s{i}.npy"), m.T)
