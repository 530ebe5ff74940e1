#!/usr/bin/env python3
"""Writes the remote volumes the volumeproxy tests serve over HTTP (tests/tests/volumeproxy.rs),
with the writers labs use: the `zarr` package (a v2 array with gzip chunks, a v3 array of uint64
labels with gzip) and CloudVolume (a precomputed volume with gzip-compressed raw chunks and a
voxel offset; a segmentation in compressed_segmentation chunks).

    remote_volumes.py OUTDIR

Writes OUTDIR/<name>/ (the volume) and OUTDIR/<name>.bin (its voxels, little-endian, x fastest),
and prints one JSON line per volume: name, shape (x, y, z), dtype, offset.
"""
import json
import os
import sys

import numcodecs
import numpy as np
import zarr
from cloudvolume import CloudVolume


def volume(shape_zyx, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 200 if dtype == np.uint8 else 2**40, size=shape_zyx, dtype=dtype)


def main(out):
    os.makedirs(out, exist_ok=True)
    made = []

    data = volume((40, 50, 60), np.uint8, 1)
    a = zarr.create_array(store=os.path.join(out, "zarr2"), shape=data.shape, chunks=(16, 16, 16),
                          dtype="uint8", zarr_format=2, compressors=numcodecs.GZip(level=1),
                          fill_value=0)
    a[:] = data
    made.append(("zarr2", data, [0, 0, 0]))

    labels = volume((33, 20, 70), np.uint64, 2)
    labels[:, :, 64:] = 0  # a column of chunks never written: read as the fill value
    a = zarr.create_array(store=os.path.join(out, "zarr3"), shape=labels.shape,
                          chunks=(16, 16, 32), dtype="uint64", zarr_format=3,
                          compressors=zarr.codecs.GzipCodec(level=1), fill_value=0,
                          config={"write_empty_chunks": False})
    a[:] = labels
    made.append(("zarr3", labels, [0, 0, 0]))

    em = volume((40, 50, 60), np.uint8, 3)
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint8", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[100, 200, 10], chunk_size=[32, 32, 16],
        volume_size=[60, 50, 40])
    cv = CloudVolume("file://" + os.path.join(out, "precomputed"), info=info, compress="gzip",
                     progress=False)
    cv.commit_info()
    cv[:, :, :] = em.transpose(2, 1, 0)[..., np.newaxis]
    made.append(("precomputed", em, [100, 200, 10]))

    # Segmentation as compressed_segmentation, few labels per block as in real data.
    seg = (volume((20, 40, 30), np.uint64, 4) % 7) + (1 << 40)
    info = CloudVolume.create_new_info(
        num_channels=1, layer_type="segmentation", data_type="uint64",
        encoding="compressed_segmentation", resolution=[8, 8, 8], voxel_offset=[-5, 0, 7],
        chunk_size=[16, 16, 16], volume_size=[30, 40, 20], compressed_segmentation_block_size=[8, 8, 8])
    cv = CloudVolume("file://" + os.path.join(out, "cseg"), info=info, compress=False,
                     progress=False)
    cv.commit_info()
    cv[:, :, :] = seg.transpose(2, 1, 0)[..., np.newaxis]
    made.append(("cseg", seg, [-5, 0, 7]))

    for name, arr, offset in made:
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        z, y, x = arr.shape
        print(json.dumps({"name": name, "shape": [x, y, z], "dtype": str(arr.dtype),
                          "offset": offset}))


if __name__ == "__main__":
    main(sys.argv[1])
