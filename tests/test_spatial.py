"""Grid -> basin weights: hand-computed cases, exact geometries, D8 delineation, the real Moselle and Salmon basins."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import shapely
import xarray as xr

from hydroml.data.readers.mhm import open_mhm_grid, open_mhm_morph
from hydroml.data.spatial import (
    EARTH_RADIUS_KM,
    BasinWeights,
    basin_area_from_facc,
    basin_weights,
    cell_area_km2,
    delineate,
    sin_authalic_latitude,
)
from hydroml.exceptions import DataError


def _grid(lat, lon):
    return xr.Dataset(coords={"lat": np.asarray(lat, float), "lon": np.asarray(lon, float)})


def _strip_area(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values)


# --------------------------------------------------------------------------------------------------- cell areas
def test_cell_area_regular_grid_matches_the_ellipsoid():
    g = _grid([10.5, 11.5], [20.5, 21.5, 22.5])
    a = cell_area_km2(g).values
    sb = sin_authalic_latitude(np.array([10.0, 11.0, 12.0]))
    expected = EARTH_RADIUS_KM**2 * np.deg2rad(1.0) * np.diff(sb)
    np.testing.assert_allclose(a, np.repeat(expected[:, None], 3, axis=1), rtol=1e-12)
    # the whole globe at 1 degree adds up to the area of the WGS84 ellipsoid (510,065,621.7 km2)
    globe = _grid(np.arange(-89.5, 90), np.arange(0.5, 360))
    assert cell_area_km2(globe).sum().item() == pytest.approx(510_065_621.7, rel=1e-7)
    # one cell against pyproj's geodesic area of the same box (edges on parallels vs geodesics: < 0.01 %)
    from pyproj import Geod

    geod = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.box(20, 10, 21, 11))[0]) / 1e6
    assert a[0, 0] == pytest.approx(geod, rel=1e-4)
    # CF cell bounds win over midpoints (irregular rows: 0..0.5 and 0.5..1.5 degrees)
    gb = xr.Dataset(
        {"lat_bnds": (("lat", "nv"), [[0.0, 0.5], [0.5, 1.5]])},
        coords={"lat": ("lat", [0.25, 1.0], {"bounds": "lat_bnds"}), "lon": [0.5, 1.5]},
    )
    sb = sin_authalic_latitude(np.array([0.0, 0.5, 1.5]))
    np.testing.assert_allclose(
        cell_area_km2(gb).values[:, 0], EARTH_RADIUS_KM**2 * np.deg2rad(1.0) * np.diff(sb)
    )
    # latitude descending gives the same areas
    np.testing.assert_allclose(cell_area_km2(g.isel(lat=slice(None, None, -1))).values, a[::-1])


def test_cell_area_curvilinear_and_projected(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = open_mhm_grid(shared_data / "moselle_mhm/input/meteo/pre/pre.nc")
    # equal-area projection (EPSG:3035): exactly 24 km x 24 km
    np.testing.assert_allclose(cell_area_km2(g).values, 576.0)
    # from the 2-D lat/lon alone (corners from neighbouring centres): within 0.1 % of the truth
    curvi = xr.Dataset(coords={"lat": g.lat, "lon": g.lon})
    np.testing.assert_allclose(cell_area_km2(curvi, grid_dims=("y", "x")).values, 576.0, rtol=1e-3)
    with pytest.raises(DataError, match="neither lat/lon coordinates nor a 'crs'"):
        cell_area_km2(xr.Dataset(coords={"y": [0.0, 1.0], "x": [0.0, 1.0]}))


# ---------------------------------------------------------------------------------------------------- masks
def test_mask_weights_hand_computed():
    g = _grid([0.5, 1.5, 2.5], [0.5, 1.5])
    area = cell_area_km2(g).values  # rows differ slightly with latitude
    frac = np.array([[1.0, 0.5], [0.0, 0.25], [1.0, 0.0]])
    mask = xr.DataArray(frac, dims=("lat", "lon"), coords=g.coords)
    w = basin_weights(g, masks={"b1": mask, "b2": mask > 0.3})
    assert list(w.basins) == ["b1", "b2"]
    assert isinstance(w, BasinWeights) and w.fractions.nnz == 4 + 3
    expected_area = (frac * area).sum()
    assert w.area_km2.sel(basin="b1").item() == pytest.approx(expected_area, rel=1e-12)
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    data = xr.DataArray(
        np.stack([x, 2 * x]), dims=("time", "lat", "lon"), coords={"time": [0, 1], **g.coords}
    )
    out = w.aggregate(xr.Dataset({"pr": data}))
    assert out.pr.dims == ("basin", "time")
    wa = frac * area
    b1 = (wa * x).sum() / wa.sum()
    np.testing.assert_allclose(out.pr.sel(basin="b1").values, [b1, 2 * b1], rtol=1e-12)
    m2 = (frac > 0.3) * area
    np.testing.assert_allclose(out.pr.sel(basin="b2").values[0], (m2 * x).sum() / m2.sum(), rtol=1e-12)
    np.testing.assert_allclose(out.area_km2.values, w.area_km2.values)
    # cos-latitude weights
    wc = basin_weights(g, masks={"b1": mask}, method="coslat")
    cw = frac * np.cos(np.deg2rad([0.5, 1.5, 2.5]))[:, None]
    assert wc.aggregate(data).isel(time=0).item() == pytest.approx((cw * x).sum() / cw.sum(), rel=1e-12)


def test_nan_cells_are_renormalised_per_time_step():
    g = _grid([0.5, 1.5], [0.5, 1.5])
    area = cell_area_km2(g).values
    mask = xr.DataArray(np.ones((2, 2)), dims=("lat", "lon"), coords=g.coords)
    w = basin_weights(g, masks={"b": mask})
    x = np.array(
        [
            [[1.0, 2.0], [3.0, 4.0]],
            [[np.nan, 2.0], [3.0, 4.0]],  # one cell missing: mean over the other three
            [[np.nan, np.nan], [np.nan, 4.0]],  # a quarter of the basin left
            [[np.nan, np.nan], [np.nan, np.nan]],
        ]
    )
    da = xr.DataArray(x, dims=("time", "lat", "lon"), coords=g.coords)
    out = w.aggregate(da).sel(basin="b").values
    valid = np.isfinite(x[1])
    assert out[1] == pytest.approx((area * np.nan_to_num(x[1]))[valid].sum() / area[valid].sum(), rel=1e-12)
    assert out[2] == 4.0 and np.isnan(out[3])
    strict = w.aggregate(da, min_valid_fraction=0.5).sel(basin="b").values
    assert np.isfinite(strict[1]) and np.isnan(strict[2])
    with pytest.raises(DataError, match="min_valid_fraction"):
        w.aggregate(da, min_valid_fraction=2)


def test_mask_and_input_errors():
    g = _grid([0.5, 1.5], [0.5, 1.5])
    with pytest.raises(DataError, match="exactly one of"):
        basin_weights(g)
    with pytest.raises(DataError, match=r"shape \(3, 2\) does not match the grid \(2, 2\)"):
        basin_weights(g, masks={"b": xr.DataArray(np.ones((3, 2)), dims=("lat", "lon"))})
    with pytest.raises(DataError, match=r"fractions must lie in \[0, 1\]"):
        basin_weights(g, masks={"b": xr.DataArray(np.full((2, 2), 2.0), dims=("lat", "lon"))})
    with pytest.raises(DataError, match="cover no cell"):
        basin_weights(g, masks={"b": xr.DataArray(np.zeros((2, 2)), dims=("lat", "lon"))})
    w = basin_weights(g, masks={"b": xr.DataArray(np.ones((2, 2)), dims=("lat", "lon"))})
    with pytest.raises(DataError, match="'lon': the weights have 2 cells, the data 3"):
        w.aggregate(xr.DataArray(np.ones((1, 2, 3)), dims=("time", "lat", "lon")))
    with pytest.raises(DataError, match="coordinate 'lat'"):
        w.aggregate(xr.DataArray(np.ones((1, 2, 2)), dims=("time", "lat", "lon"), coords={"lat": [5.0, 6.0]}))


# -------------------------------------------------------------------------------------------------- GeoJSON
def test_geojson_fractions_exact_geometries():
    g = _grid([10.5, 11.5], [20.5, 21.5])
    # the western half of the south-western cell (split along a meridian: exactly 0.5)
    w = basin_weights(g, geojson=shapely.box(20.0, 10.0, 20.5, 11.0))
    np.testing.assert_allclose(w.to_dataarray().values[0], [[0.5, 0.0], [0.0, 0.0]], atol=1e-12)
    # the northern half in degrees of the southern row: the area fraction follows the authalic latitude
    poly = {"type": "Polygon", "coordinates": [[[20, 10.5], [22, 10.5], [22, 11], [20, 11], [20, 10.5]]]}
    sb = sin_authalic_latitude(np.array([10.0, 10.5, 11.0]))
    expected = (sb[2] - sb[1]) / (sb[2] - sb[0])
    assert expected == pytest.approx(0.4996, abs=1e-4)
    frac = basin_weights(g, geojson=poly).to_dataarray().values[0]
    np.testing.assert_allclose(frac, [[expected, expected], [0.0, 0.0]], rtol=1e-9, atol=1e-12)
    # a FeatureCollection: one basin per feature, named by a property; a polygon reaching outside the grid
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"gid": "whole"},
                "geometry": shapely.geometry.mapping(shapely.box(19, 9, 23, 13)),
            },
            {
                "type": "Feature",
                "properties": {"gid": "ne"},
                "geometry": shapely.geometry.mapping(shapely.box(21, 11, 22, 12)),
            },
        ],
    }
    w = basin_weights(g, geojson=fc, id_property="gid")
    assert list(w.basins) == ["whole", "ne"]
    d = w.to_dataarray()
    np.testing.assert_allclose(d.sel(basin="whole").values, 1.0)
    np.testing.assert_allclose(d.sel(basin="ne").values, [[0, 0], [0, 1]], atol=1e-12)
    assert w.area_km2.sel(basin="whole").item() == pytest.approx(cell_area_km2(g).sum().item(), rel=1e-12)
    with pytest.raises(DataError, match="property 'name' not found"):
        basin_weights(g, geojson=fc, id_property="name")
    # a grid in 0..360 degrees east and a polygon across the Greenwich meridian in -180..180
    g360 = _grid([10.5, 11.5], np.arange(0.5, 360.0))
    f360 = basin_weights(g360, geojson=shapely.box(-1.0, 10.0, 1.0, 11.0)).to_dataarray().values[0]
    np.testing.assert_allclose(f360[0, [0, 359]], 1.0)
    assert f360.sum() == pytest.approx(2.0)


def test_geojson_projected_grid():
    """On an equal-area projected grid, polygons (lon/lat) are projected and cut in the plane."""
    from pyproj import Transformer

    x = np.array([4_000_000.0, 4_010_000.0])
    y = np.array([2_910_000.0, 2_900_000.0])
    g = xr.Dataset(coords={"y": y, "x": x}, attrs={"crs": "EPSG:3035"})
    to_ll = Transformer.from_crs(3035, 4326, always_xy=True)
    # the western half of the first cell, as a lon/lat polygon
    ring = [(3_995_000, 2_905_000), (4_000_000, 2_905_000), (4_000_000, 2_915_000), (3_995_000, 2_915_000)]
    ll = [to_ll.transform(*p) for p in ring]
    w = basin_weights(g, geojson=shapely.Polygon(ll))
    np.testing.assert_allclose(w.to_dataarray().values[0], [[0.5, 0], [0, 0]], atol=2e-3)
    assert w.area_km2.item() == pytest.approx(50.0, rel=2e-3)


def test_salmon_river_polygon_area(shared_data):
    path = shared_data / "canada_basins/salmon_river/salmon_river.geojson"
    g = _grid(np.arange(53.95, 55.15, 0.1), np.arange(-124.15, -122.45, 0.1))
    w = basin_weights(g, geojson=path)
    assert list(w.basins) == ["7120016260"]  # the feature id
    from pyproj import Geod

    geom = shapely.geometry.shape(json.loads(path.read_text())["geometry"])
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0]) / 1e6
    assert w.area_km2.item() == pytest.approx(geodesic, rel=1e-3)
    # the same basin on a coarser 0.25 degree grid covers the same area
    g2 = _grid(np.arange(53.875, 55.2, 0.25), np.arange(-124.125, -122.4, 0.25))
    assert basin_weights(g2, geojson=path).area_km2.item() == pytest.approx(geodesic, rel=1e-3)


# ----------------------------------------------------------------------------------------- flow directions
# A 4 x 5 raster, north up, ESRI codes (1 E, 2 SE, 4 S, 8 SW, 16 W, 32 NW, 64 N, 128 NE).
#  row 0:  2   4   8   4  16
#  row 1:  1   4  16  16  16
#  row 2:  1   4   8   4   4
#  row 3:  1   1   1   1   0      the bottom row flows east to the outlet (3,4), a pit
FD = np.array(
    [
        [2, 4, 8, 4, 16],
        [1, 4, 16, 16, 16],
        [1, 4, 8, 4, 4],
        [1, 1, 1, 1, 0],
    ],
    dtype=float,
)


def _fd(values=FD, north_up=True):
    y = np.arange(values.shape[0])[::-1] + 0.5
    if not north_up:
        values, y = values[::-1], y[::-1]
    return xr.DataArray(
        values, dims=("lat", "lon"), coords={"lat": y, "lon": np.arange(values.shape[1]) + 0.5}
    )


def _expected_upstream(fd, outlet):
    """Reference delineation: follow every cell downstream until it reaches the outlet or leaves."""
    steps = {
        1: (0, 1),
        2: (1, 1),
        4: (1, 0),
        8: (1, -1),
        16: (0, -1),
        32: (-1, -1),
        64: (-1, 0),
        128: (-1, 1),
    }
    ny, nx = fd.shape
    out = np.zeros(fd.shape, bool)
    for r0 in range(ny):
        for c0 in range(nx):
            r, c = r0, c0
            for _ in range(ny * nx):
                if (r, c) == outlet:
                    out[r0, c0] = True
                    break
                if fd[r, c] not in steps:
                    break
                dr, dc = steps[int(fd[r, c])]
                r, c = r + dr, c + dc
                if not (0 <= r < ny and 0 <= c < nx):
                    break
    return out


def test_d8_delineation_hand_made():
    fd = _fd()
    masks = delineate(fd, {"outlet": {"row": 3, "col": 4}, "mid": {"row": 2, "col": 1}})
    # by hand: (2,1) receives (1,1) [S] and (2,0) [E]; (1,1) receives (0,0) [SE], (0,1) [S], (0,2) [SW],
    # (1,0) [E] and (1,2) [W]; (1,2) receives (1,3) [W]; (1,3) receives (0,3) [S] and (1,4) [W];
    # (0,3) receives (0,4) [W]. Not upstream: (2,2) [SW -> (3,1)], (2,3), (2,4) and the bottom row.
    expected_mid = np.array(
        [
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(masks.sel(basin="mid").values, expected_mid)
    np.testing.assert_array_equal(masks.sel(basin="mid").values, _expected_upstream(FD, (2, 1)))
    np.testing.assert_array_equal(masks.sel(basin="outlet").values, _expected_upstream(FD, (3, 4)))
    assert masks.sel(basin="outlet").sum().item() == 20  # every cell drains to the pit
    # gauges by coordinates (the cell containing the point), and a south-up copy of the same raster
    by_xy = delineate(fd, {"mid": (1.4, 1.6)})
    np.testing.assert_array_equal(by_xy.sel(basin="mid").values, expected_mid)
    flipped = delineate(_fd(north_up=False), {"mid": (1.5, 1.5)})
    np.testing.assert_array_equal(flipped.sel(basin="mid").values[::-1], expected_mid)
    # TauDEM codes (1 E, 2 NE, 3 N, 4 NW, 5 W, 6 SW, 7 S, 8 SE) describe the same network
    esri_to_taudem = {1: 1, 2: 8, 4: 7, 8: 6, 16: 5, 32: 4, 64: 3, 128: 2, 0: 0}
    td = np.vectorize(esri_to_taudem.get)(FD.astype(int)).astype(float)
    t = delineate(_fd(td), {"mid": {"row": 2, "col": 1}}, encoding="taudem")
    np.testing.assert_array_equal(t.sel(basin="mid").values, expected_mid)
    with pytest.raises(DataError, match="outside the flow-direction raster"):
        delineate(fd, {"far": (50.0, 50.0)})
    with pytest.raises(DataError, match="unknown flow-direction encoding"):
        delineate(fd, {"mid": (1.5, 1.5)}, encoding="arcgis9")


def test_flowdir_weights_same_grid_and_finer_raster():
    # on the forcing grid itself: fractions are the 0/1 mask
    fd = _fd()
    w = basin_weights(fd.to_dataset(name="fd"), gauges={"mid": {"row": 2, "col": 1}}, flowdir=fd)
    np.testing.assert_array_equal(w.to_dataarray().sel(basin="mid").values, _expected_upstream(FD, (2, 1)))
    # a 4 x 4 fine raster (1 km, EPSG:3035) under a 2 x 2 coarse grid (2 km): the basin is the west column
    # plus one fine cell of the north-east coarse cell, all flowing south to (3, 0)
    fine = np.array([[4, 16, 16, 16], [4, 0, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    x0, y0 = 4_000_500.0, 2_903_500.0
    fdf = xr.DataArray(
        fine,
        dims=("y", "x"),
        coords={"y": y0 - 1000 * np.arange(4), "x": x0 + 1000 * np.arange(4)},
        attrs={"crs": "EPSG:3035"},
    )
    fine[3, 0] = 4  # flows off the raster: the outlet still counts its own cell
    coarse = xr.Dataset(
        coords={"y": [2_903_000.0, 2_901_000.0], "x": [4_001_000.0, 4_003_000.0]}, attrs={"crs": "EPSG:3035"}
    )
    w = basin_weights(coarse, gauges={"b": {"row": 3, "col": 0}}, flowdir=fdf)
    # upstream of (3,0): (2,0), (1,0), (0,0), and (0,1), (0,2), (0,3) draining west along row 0
    np.testing.assert_allclose(w.to_dataarray().sel(basin="b").values, [[3 / 4, 2 / 4], [2 / 4, 0.0]])
    assert w.area_km2.item() == pytest.approx(7.0)
    facc = xr.DataArray(np.full((4, 4), 0.0), dims=("y", "x"), coords=fdf.coords, attrs=fdf.attrs)
    facc[3, 0] = 6
    assert basin_area_from_facc(facc, {"b": {"row": 3, "col": 0}}).item() == pytest.approx(7.0)


def test_fine_latlon_raster_to_coarse_latlon_grid():
    # 0.5 degree D8 raster under a 1 degree grid; the basin is the western half-degree column (flowing south)
    fine = np.array([[4, 0, 0, 0], [4, 0, 0, 0], [4, 0, 0, 0], [4, 0, 0, 0]], dtype=float)
    fd = xr.DataArray(
        fine,
        dims=("lat", "lon"),
        coords={"lat": [61.75, 61.25, 60.75, 60.25], "lon": [10.25, 10.75, 11.25, 11.75]},
    )
    coarse = _grid([60.5, 61.5], [10.5, 11.5])
    w = basin_weights(coarse, gauges={"b": {"row": 3, "col": 0}}, flowdir=fd)
    fine_area = cell_area_km2(fd).values
    coarse_area = cell_area_km2(coarse).values
    expected = np.zeros((2, 2))
    expected[1, 0] = (
        fine_area[:2, 0].sum() / coarse_area[1, 0]
    )  # lat 61..62 (north row of a lat-ascending grid)
    expected[0, 0] = fine_area[2:, 0].sum() / coarse_area[0, 0]
    np.testing.assert_allclose(w.to_dataarray().sel(basin="b").values, expected, rtol=1e-12)
    assert expected[0, 0] == pytest.approx(0.5, abs=1e-3) and expected[0, 0] != 0.5
    assert w.area_km2.item() == pytest.approx(fine_area[:, 0].sum(), rel=1e-12)
    # the same grid given in 0..360 longitudes (here identical) and a raster in -180..180 west of Greenwich
    fdw = fd.assign_coords(lon=fd.lon - 20.0)
    cw = _grid([60.5, 61.5], [350.5, 351.5])
    ww = basin_weights(cw, gauges={"b": {"row": 3, "col": 0}}, flowdir=fdw)
    np.testing.assert_allclose(ww.to_dataarray().sel(basin="b").values, expected, rtol=1e-9)


def test_geojson_on_curvilinear_grid_matches_projected(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = open_mhm_grid(shared_data / "moselle_mhm/input/meteo/pre/pre.nc")
    poly = shapely.box(6.0, 48.5, 6.6, 49.1)  # lon/lat box over the middle of the domain
    proj = basin_weights(g, geojson=poly)  # EPSG:3035 cells, polygon projected
    curvi = basin_weights(xr.Dataset(coords={"lat": g.lat, "lon": g.lon}), geojson=poly, grid_dims=("y", "x"))
    np.testing.assert_allclose(curvi.to_dataarray().values, proj.to_dataarray().values, atol=0.02)
    from pyproj import Geod

    true = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.segmentize(poly, 0.01))[0]) / 1e6
    assert proj.area_km2.item() == pytest.approx(true, rel=2e-3)
    assert curvi.area_km2.item() == pytest.approx(true, rel=1e-2)


def test_moselle_gauge_398(shared_data):
    root = shared_data / "moselle_mhm"
    morph = open_mhm_morph(root)
    assert morph.attrs["crs"] == "EPSG:3035" and morph.fdir.shape == (432, 288)
    # flow accumulation counts upstream 500 m cells, excluding the cell itself: (46544 + 1) x 0.25 km2
    area = basin_area_from_facc(morph.facc, morph.idgauges)
    assert list(area.basin.values) == ["333", "398"]
    assert area.sel(basin="398").item() == pytest.approx(11_636.25)
    assert area.sel(basin="398").item() == pytest.approx(11_600, rel=0.01)  # "Moselle at Perl, ~11,600 km2"
    assert area.sel(basin="333").item() == pytest.approx(3_760, rel=0.01)
    # delineating on the D8 raster gives the same basins, cell for cell
    masks = delineate(morph.fdir, morph.idgauges)
    assert masks.sel(basin="398").sum().item() == morph.facc.max().item() + 1 == 46_545
    assert masks.sel(basin="333").sum().item() == 15_038
    assert not (masks.sel(basin="333") & ~masks.sel(basin="398")).any()  # 333 is nested in 398
    # the same outlet given as lon/lat two cells off the river (the domain edge is just north), snapped to the largest accumulation nearby
    from pyproj import Transformer

    r, c = (int(v) for v in np.argwhere(morph.idgauges.values == 398)[0])
    x, y = morph.x.values[c + 2], morph.y.values[r + 2]  # 1 km east, 1 km south of the outlet
    lon, lat = Transformer.from_crs(3035, 4326, always_xy=True).transform(x, y)
    off = delineate(morph.fdir, {"398": (lat, lon)}, gauges_crs="EPSG:4326")
    assert off.sum().item() < 1000  # a small side catchment, not the Moselle
    snapped = delineate(
        morph.fdir, {"398": (lat, lon)}, gauges_crs="EPSG:4326", facc=morph.facc, snap_radius=3
    )
    np.testing.assert_array_equal(snapped.sel(basin="398").values, masks.sel(basin="398").values)
    with pytest.raises(DataError, match="snap_radius needs facc"):
        delineate(morph.fdir, {"398": (lat, lon)}, gauges_crs="EPSG:4326", snap_radius=3)
    # on the 24 km meteo grid: fractions of coarse cells, summing to the same area
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = open_mhm_grid(root / "input/meteo/pre/pre.nc")
        mask = open_mhm_grid(root / "input/meteo/mask.nc").mask.isel(time=0)
    w = basin_weights(pre, gauges=morph.idgauges, flowdir=morph.fdir)
    assert w.area_km2.sel(basin="398").item() == pytest.approx(11_636.25, rel=1e-9)
    frac = w.to_dataarray().sel(basin="398").values
    # each 500 m cell is 1/2304 of a 24 km cell: fractions are whole numbers of fine cells
    np.testing.assert_allclose(frac * 2304, np.round(frac * 2304), atol=1e-9)
    assert frac.max() == 1.0 and (frac == 1.0).sum() == 7
    # the cells the basin touches are exactly the 34 cells of mHM's own domain mask
    np.testing.assert_array_equal(frac > 0, np.isfinite(mask.values))
    # the same grid known only by its 2-D lat/lon (no crs): nearest-centre location, ellipsoidal cell areas
    bare = xr.Dataset(coords={"lat": pre.lat, "lon": pre.lon})
    wb = basin_weights(bare, gauges=morph.idgauges, flowdir=morph.fdir, grid_dims=("y", "x"))
    np.testing.assert_allclose(wb.to_dataarray().values, w.to_dataarray().values, atol=1e-4)
    assert wb.area_km2.sel(basin="398").item() == pytest.approx(11_636.25, rel=1e-9)
    q = w.aggregate(pre).pre.sel(basin="398")
    assert 700 < float(q.mean()) * 365.25 < 1100  # mm/year of precipitation over the Moselle


# ----------------------------------------------------------------------------- sparse product vs dense mean
def test_sparse_aggregation_equals_dense_masked_mean(shared_data):
    root = shared_data / "moselle_mhm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmin = open_mhm_grid(root / "input/meteo/tmin.nc").isel(time=slice(0, 400))
    morph = open_mhm_morph(root)
    w = basin_weights(tmin, gauges=morph.idgauges, flowdir=morph.fdir)
    x = tmin.tmin.values.copy()  # 20 NaN cells outside the domain
    rng = np.random.default_rng(1)
    x[rng.random(x.shape) < 0.1] = np.nan  # and some more missing at random
    da = tmin.tmin.copy(data=x)
    out = w.aggregate(da)
    frac = w.to_dataarray().values  # dense [basin, y, x]
    area = cell_area_km2(tmin).values
    for k, b in enumerate(w.basins):
        wt = frac[k] * area
        valid = np.isfinite(x)
        dense = np.nansum(x * wt, axis=(1, 2)) / np.sum(np.where(valid, wt, 0.0), axis=(1, 2))
        np.testing.assert_allclose(out.sel(basin=b).values, dense, rtol=1e-12)
        # the same through xarray's weighted mean on the masked field
        xw = da.weighted(xr.DataArray(wt, dims=("y", "x"))).mean(("y", "x"))
        np.testing.assert_allclose(out.sel(basin=b).values, xw.values, rtol=1e-10)
    # dask: chunked in time and space, same numbers, still lazy until computed
    import dask  # noqa: F401  (dev dependency: fails, never skips)

    lazy = w.aggregate(da.chunk({"time": 100, "x": 3}))
    assert isinstance(lazy.data, dask.array.Array)
    np.testing.assert_allclose(lazy.compute().values, out.values, rtol=1e-12)


def test_weights_round_trip_through_netcdf(tmp_path):
    g = _grid([0.5, 1.5, 2.5], [0.5, 1.5])
    mask = xr.DataArray([[1.0, 0.5], [0.0, 0.25], [1.0, 0.0]], dims=("lat", "lon"), coords=g.coords)
    w = basin_weights(g, masks={"b1": mask}, method="coslat")
    from hydroml._io import write_netcdf_atomic

    write_netcdf_atomic(w.to_dataset(), tmp_path / "w.nc")
    saved = xr.load_dataset(tmp_path / "w.nc")
    assert saved.sizes["entry"] == 4  # only the non-zero fractions are stored
    w2 = BasinWeights.from_dataset(saved)
    assert w2.method == "coslat" and list(w2.basins) == ["b1"]
    np.testing.assert_array_equal(w2.fractions.toarray(), w.fractions.toarray())
    data = xr.DataArray(np.arange(12.0).reshape(2, 3, 2), dims=("time", "lat", "lon"), coords=g.coords)
    xr.testing.assert_allclose(w.aggregate(data), w2.aggregate(data))
