"""Exact tiled inference: equality with untiled (seams included), masks, lazy input, NetCDF/zarr output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from hydroml.memory import probe_receptive_field, tiled_predict, tiles
from hydroml.models import create


def _model(padding_mode="zeros", depth=2, seed=0):
    torch.manual_seed(seed)
    m = create("unet", in_channels=3, out_channels=2, base_width=4, depth=depth, padding_mode=padding_mode)
    with torch.no_grad():  # non-trivial batch-norm statistics (eval mode: a per-channel affine map)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _data(shape=(3, 61, 75), seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    x[:, 5:12, 30:41] = np.nan  # a "lake": all channels missing
    x[0, 40:44, 2:9] = np.nan  # one channel missing
    return x


def _untiled(m, x):
    with torch.no_grad():
        return m({"x": torch.from_numpy(np.nan_to_num(x))[None]})["y_hat"][0].numpy()


def test_tiles_cover_grid_and_align():
    ts = tiles((61, 75), 16, 10, stride=4)
    cover = np.zeros((61, 75), int)
    for t in ts:
        cover[t.r0 : t.r1, t.c0 : t.c1] += 1
        assert t.r0 % 4 == 0 and t.c0 % 4 == 0 and t.wr0 % 4 == 0 and t.wc0 % 4 == 0
        assert t.wr0 == max(0, t.r0 - 12) and t.wc1 == min(75, t.c1 + 12)
    assert (cover == 1).all()


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_tiled_equals_untiled_including_seams(padding_mode):
    m = _model(padding_mode)
    x = _data()
    ref = _untiled(m, x)
    out = tiled_predict(m, x, tile=32)
    valid = ~np.isnan(x).all(axis=0)
    assert np.isnan(out[:, ~valid]).all()  # masked where every channel is missing
    diff = np.abs(out[:, valid] - ref[:, valid])
    assert diff.max() <= 1e-5
    seams = np.zeros_like(valid)
    seams[31:33, :] = seams[:, 31:33] = seams[:, 63:65] = True
    assert np.abs(out[:, seams & valid] - ref[:, seams & valid]).max() <= 1e-5


def test_halo_too_small_is_not_exact():
    m = _model()
    x = np.nan_to_num(_data())
    ref = _untiled(m, x)
    rf = m.receptive_field()
    bad = tiled_predict(m, x, tile=32, halo=0, stride=rf.stride, mask=None)
    assert np.abs(bad - ref).max() > 1e-3


def test_probe_for_model_without_receptive_field():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 5, padding=2),
        nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3, padding=1),
    ).eval()  # fmt: skip
    rf = probe_receptive_field(net, 3, key="", size=32, trials=2)
    assert rf.stride == 2 and rf.radius >= 1 + 2 * 2 + 1
    x = np.random.default_rng(2).normal(size=(3, 40, 52)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)[None])[0].numpy()
    out = tiled_predict(net, x, tile=8, key="")
    assert np.abs(out - ref).max() <= 1e-5


def test_lazy_netcdf_in_and_out_and_zarr(tmp_path):
    m = _model()
    x = _data((3, 50, 40))
    ds = xr.Dataset(
        {f"c{i}": (("lat", "lon"), x[i]) for i in range(3)},
        coords={"lat": np.linspace(50, 45, 50), "lon": np.linspace(5, 9, 40)},
    )
    src = tmp_path / "in.nc"
    ds.to_netcdf(src)
    ref = _untiled(m, x)
    with xr.open_dataset(src, chunks={}) as lazy:  # dask-backed: read tile by tile
        out_nc = tiled_predict(
            m,
            lazy,
            variables=["c0", "c1", "c2"],
            tile=32,
            out=tmp_path / "out.nc",
            attrs={"units": "mm/month"},
        )
        out_zarr = tiled_predict(m, lazy, variables=["c0", "c1", "c2"], tile=32, out=tmp_path / "out.zarr")
    for out in (out_nc, out_zarr):
        assert out.dims == ("output", "lat", "lon")
        np.testing.assert_allclose(out["lat"].values, ds["lat"].values)
        vals = out.values
        valid = ~np.isnan(x).all(axis=0)
        assert np.abs(vals[:, valid] - ref[:, valid]).max() <= 1e-5
    assert out_nc.attrs["units"] == "mm/month"
    assert not list(tmp_path.glob(".out*"))  # no temporary left behind


def test_explicit_mask_and_batched_input():
    m = _model()
    x = np.nan_to_num(_data((2, 3, 33, 30)))
    mask = np.ones((33, 30), bool)
    mask[:4] = False
    out = tiled_predict(m, x, tile=16, mask=mask)
    assert out.shape == (2, 2, 33, 30)
    assert np.isnan(out[:, :, :4]).all() and not np.isnan(out[:, :, 4:]).any()
    with torch.no_grad():
        ref = m({"x": torch.from_numpy(x)})["y_hat"].numpy()
    assert np.abs(out[:, :, 4:] - ref[:, :, 4:]).max() <= 1e-5
