"""Write the example notebooks (without outputs) from the cell lists below.

    python notebooks/_build.py          # rewrite notebooks/*.ipynb
    python notebooks/_build.py --check  # exit 1 if a notebook differs from what this script writes

The notebooks are stored without outputs; ``tests/test_notebooks.py`` executes them. Edit the cells here, not in
the ``.ipynb`` files, and re-run this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

os.environ.setdefault("HYDROML_PROGRESS", "0")  # no progress bars in the executed notebook
torch.set_num_threads(1)  # small models: one thread is faster on a shared machine
warnings.filterwarnings("ignore", category=RuntimeWarning)  # NaN means of empty slices in the plots
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
%matplotlib inline"""


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str, tags: list[str] | None = None):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = tags
    return cell


# --------------------------------------------------------------------------------------------------------------
NB01 = [
    md("""
# 01 · Discharge quickstart: train, forecast, evaluate, look

This notebook runs the whole hydroml workflow for river discharge on the **built-in demo data** (synthetic: a
seeded water-balance model on a 32 x 32 grid with five nested basins; no download, no data root needed):

1. open the demo basins through the data catalog,
2. train a small LSTM (a few epochs, about a minute on 2 CPU cores) into a run directory,
3. forecast the test period from the run directory (no observations needed),
4. evaluate against observations and against a day-of-year climatology benchmark,
5. look at hydrographs, flow-duration curves and skill across basins, and compare with the pretrained
   `lstm.demo_discharge` from the model zoo.
"""),
    code(SETUP),
    md("""
## 1. Data from the catalog
`hydroml.catalog.open` returns an `xarray.Dataset` in canonical names and units (`pr` in mm/day, `q_mm` discharge
as depth over the basin in mm/day...). The demo product `basins` holds basin-mean forcings on `(basin, time)`
and static attributes on `(basin,)`.
"""),
    code("""
import hydroml.catalog

ds = hydroml.catalog.open("demo", product="basins")
print(ds.attrs["synthetic"])
ds[["pr", "tas", "q_mm", "area_km2"]]
"""),
    md("""
## 2. Train an LSTM
A training configuration is a plain dictionary (or YAML file), validated strictly: unknown keys are errors.
We start from the configuration of `hydroml demo` and make it smaller so that the notebook runs quickly.
`train` writes a run directory `runs/<name>_<YYYYmmdd_HHMMSS>/` with the resolved config, the normalisation
statistics, the weights (safetensors), per-epoch metrics and a log.
"""),
    code("""
import tempfile
from pathlib import Path

from hydroml.cli.demo import DYNAMIC_INPUTS, STATIC_INPUTS, TEST_PERIOD, TRAIN_PERIOD, demo_config
from hydroml.training import train

config = demo_config(epochs=4, hidden=24, seq_len=90, seed=0, lr=1e-2)
config["data"]["train_period"] = ["2004-01-01", "2009-12-31"]  # a shorter training period for the notebook
config["train"]["batch_size"] = 128
print("inputs:", config["data"]["dynamic_inputs"], "+", config["data"]["static_inputs"])

runs = Path(os.environ.get("HYDROML_RUNS", tempfile.mkdtemp(prefix="hydroml_runs_")))
run_dir = train(config, runs_dir=runs, progress=False)
sorted(p.name for p in run_dir.iterdir())
"""),
    code("""
import hydroml.plot as hp

ax = hp.training_curves(run_dir)
"""),
    md("""
## 3. Forecast the test period
`forecast` needs only the run directory and the inputs; `sliding` predicts each day from its own window (as in
training), `stateful` makes one pass carrying the LSTM state (faster on long periods).
"""),
    code("""
from hydroml.forecast import forecast

pred = forecast(run_dir, ds[DYNAMIC_INPUTS + STATIC_INPUTS], *TEST_PERIOD, mode="sliding")
pred["q_mm"].attrs
"""),
    md("""
## 4. Evaluate, with a benchmark
An NSE means more next to a benchmark: the day-of-year climatology of the training period. The skill score
`(NSE_model - NSE_clim) / (1 - NSE_clim)` is 0 for a model no better than the climatology, 1 for a perfect one.
"""),
    code("""
import pandas as pd

from hydroml.evaluation import climatology, evaluate, nse, skill_score

obs = ds["q_mm"].sel(time=slice(*TEST_PERIOD))
sim = pred["q_mm"]
clim = climatology(ds["q_mm"], ref_period=TRAIN_PERIOD).sel(time=obs["time"])
scores = evaluate(obs, sim, ["nse", "kge", "pbias"], dim="time")
table = scores.to_dataframe()[["nse", "kge", "pbias"]]
table["nse_climatology"] = nse(obs, clim, dim="time").to_series()
table["nse_skill_over_climatology"] = skill_score("nse", obs, sim, clim, dim="time").to_series()
table.round(3)
"""),
    md("""
## 5. Look at it
A hydrograph of one basin with its precipitation hanging from the top axis, and the flow-duration curves of
the observations, the LSTM and the climatology.
"""),
    code("""
basin = str(table["nse"].idxmax())
year = slice("2014-01-01", "2014-12-31")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 4), width_ratios=[2.2, 1], layout="constrained")
hp.hydrograph(
    obs.sel(time=year),
    {"LSTM": sim.sel(time=year), "climatology": clim.sel(time=year)},
    precip=ds["pr"],
    basin=basin,
    ax=ax1,
)
hp.flow_duration_curve({"observed": obs, "LSTM": sim, "climatology": clim}, basin=basin, ax=ax2);
"""),
    md("""
The pretrained zoo model `lstm.demo_discharge` (trained longer by `scripts/train_zoo.py` on the same data)
forecasts the same period; its card records its inputs, units, normalisation and test scores. Across the five
basins, the NSE of each model against the climatology benchmark, and where the gauges are:
"""),
    code("""
import hydroml.zoo

zoo_model = hydroml.zoo.load("lstm.demo_discharge")
print(zoo_model.card.description)
zoo_pred = forecast(zoo_model, ds, *TEST_PERIOD)
nse_by_model = {
    "LSTM (this notebook)": table["nse"].to_numpy(),
    "lstm.demo_discharge (zoo)": nse(obs, zoo_pred["q_mm"], dim="time").values,
    "day-of-year climatology": table["nse_climatology"].to_numpy(),
}
import cartopy.crs as ccrs

fig = plt.figure(figsize=(13, 4.5), layout="constrained")
hp.metric_cdf(nse_by_model, metric="NSE", lower=-0.5, ax=fig.add_subplot(1, 2, 1))
skill = skill_score("nse", obs, sim, clim, dim="time").rename("NSE skill over climatology")
ax = hp.skill_map(
    skill,
    lat=ds["gauge_lat"].values,
    lon=ds["gauge_lon"].values,
    vmin=0,
    vmax=1,
    coastlines=False,  # the demo region is made up: real coastlines would mislead
    ax=fig.add_subplot(1, 2, 2, projection=ccrs.PlateCarree()),
)
ax.set_title("gauges of the (synthetic) demo basins", fontsize=10);
"""),
    md("""
Next: `02_gridded_evaporation` (a CNN over a grid, evaporation corrected by water-cycle closure),
`03_memory` (training under a memory budget, tiled inference), `04_real_basins` (the same workflow on real
CAMELS-US basins).
"""),
]

# --------------------------------------------------------------------------------------------------------------
NB02 = [
    md("""
# 02 · Gridded evaporation: a CNN, water-cycle closure, skill maps

On the monthly product of the demo data (a 32 x 32 grid, 2000-2015, **synthetic**: the demo's water-balance
model knows the true evaporation of every cell):

1. train a small U-Net mapping monthly forcing (this month and the one before) and static maps to actual
   evaporation, and map its skill per cell, alone and over a monthly climatology;
2. correct a biased evaporation *product* by **water-cycle closure supervision** (Hascoet et al., Remote Sensing
   2024): the corrected field, summed over each catchment, must close `P - E - Q - dS = 0`. No cell ever sees
   the truth; held-out catchments (basin k-fold) show whether the correction generalises;
3. compare the water-budget residual and the skill against the truth before and after the correction.
"""),
    code(SETUP),
    code("""
import hydroml.catalog
import hydroml.plot as hp

monthly = hydroml.catalog.open("demo", product="monthly")
TRAIN, VAL, TEST = ("2001-01-01", "2009-12-31"), ("2010-01-01", "2011-12-31"), ("2012-01-01", "2015-12-31")
monthly[["pr", "evspsbl", "evspsblpot", "land_mask"]]
"""),
    md("""
## 1. A U-Net for monthly evaporation
`GridDataset` cuts `(time, lat, lon)` data into samples `{"x": [B, C, H, W], "y": [B, 1, H, W], "mask": ...}`
(channels: the inputs and their lags, then the static maps), normalised with statistics fitted on the training
period and land cells only. The loss is masked to valid cells.
"""),
    code("""
import pandas as pd

from hydroml.datasets import GridDataset
from hydroml.models import create

inputs, static = ["pr", "tas", "rsds", "evspsblpot"], ["elevation", "forest_frac", "soil_capacity"]
common = dict(static_inputs=static, lags=2, valid_mask="land_mask")
train_ds = GridDataset(monthly, inputs, ["evspsbl"], period=TRAIN, **common)
val_ds = GridDataset(monthly, inputs, ["evspsbl"], period=VAL, normaliser=train_ds.normaliser, **common)
test_ds = GridDataset(monthly, inputs, ["evspsbl"], period=TEST, normaliser=train_ds.normaliser, **common)
print(len(train_ds), "training months;", train_ds.n_channels, "channels:", train_ds.channel_names)

torch.manual_seed(0)
rng = np.random.default_rng(0)
unet = create("unet", in_channels=train_ds.n_channels, base_width=8, depth=2, norm="none", padding_mode="replicate")
optimiser = torch.optim.Adam(unet.parameters(), lr=3e-3)


def masked_mse(batch):
    y_hat = unet({"x": batch["x"]})["y_hat"]
    return ((y_hat - torch.nan_to_num(batch["y"]))[batch["mask"]] ** 2).mean()


history = []
for epoch in range(1, 16):
    unet.train()
    losses = []
    for idx in np.array_split(rng.permutation(len(train_ds)), len(train_ds) // 8):
        loss = masked_mse(train_ds.get_batch(idx))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    unet.eval()
    with torch.no_grad():
        val_loss = float(masked_mse(val_ds.get_batch(np.arange(len(val_ds)))))
    history.append({"epoch": epoch, "train_loss": np.mean(losses), "val_loss": val_loss})
hp.training_curves(pd.DataFrame(history), title="U-Net, monthly evaporation (normalised MSE)");
"""),
    md("""
Predict the test period, back in mm/month, and score every cell over time: the NSE against the demo's truth,
and the NSE skill over the monthly climatology of the training period (1 = perfect, 0 = no better than the
climatology).
"""),
    code("""
import xarray as xr

from hydroml.evaluation import climatology, nse, skill_score

batch = test_ds.get_batch(np.arange(len(test_ds)))
with torch.no_grad():
    y_hat = unet({"x": batch["x"]})["y_hat"][:, 0].numpy()
land = monthly["land_mask"].values.astype(bool)
e_unet = xr.DataArray(
    np.where(land, train_ds.normaliser.inverse("evspsbl", y_hat), np.nan),
    dims=("time", "lat", "lon"),
    coords={"time": test_ds.time[batch["time"].numpy()], "lat": monthly["lat"], "lon": monthly["lon"]},
    name="evspsbl",
)
truth = monthly["evspsbl"].sel(time=e_unet["time"])
clim = climatology(monthly["evspsbl"], ref_period=TRAIN).sel(time=e_unet["time"])
nse_cells = nse(truth, e_unet, dim="time").rename("NSE")
skill_cells = skill_score("nse", truth, e_unet, clim, dim="time").rename("NSE skill over climatology")
print(f"median over land cells: NSE {float(nse_cells.median()):.3f}, "
      f"climatology NSE {float(nse(truth, clim, dim='time').median()):.3f}, "
      f"skill over climatology {float(skill_cells.median()):.3f}")

import cartopy.crs as ccrs

fig = plt.figure(figsize=(13, 4.5), layout="constrained")
kw = dict(coastlines=False)  # the demo region is made up: real coastlines would mislead
hp.skill_map(nse_cells, ax=fig.add_subplot(1, 2, 1, projection=ccrs.PlateCarree()), vmin=0, vmax=1,
             title="U-Net NSE per cell (test 2012-2015)", **kw)
hp.skill_map(skill_cells, ax=fig.add_subplot(1, 2, 2, projection=ccrs.PlateCarree()), vmin=-1, vmax=1,
             title="NSE skill over the monthly climatology", **kw);
"""),
    md("""
## 2. Correcting a biased product by water-cycle closure
`closure.demo_problem()` corrupts the true monthly evaporation into a biased "product" (too high over forests
and in warm months, too low in mountains, plus noise) and sets up the supervision: the five nested basins become
five disjoint incremental (between-gauge) units, each with its monthly budget `P - Q - dS` in mm/month.
`closure.kfold` trains on four units and corrects the fifth, five times: every unit is scored by a model that
never saw its budget.
"""),
    code("""
import hydroml.closure as closure

problem, data = closure.demo_problem()
print("units:", problem.units, "| channels:", problem.channels)
corrected, folds = closure.kfold(problem, k=5, epochs=10, progress=False)
rows = []
for f in folds:
    for when in ("before", "after"):
        rows.append({"held-out unit": f["test_units"][0], "": when, **f[when]})
res = pd.DataFrame(rows).set_index(["held-out unit", ""])
res[["residual_mae", "residual_rel", "nse_cell_median", "bias_cell_mae"]].round(3)
"""),
    md("""
`residual_mae` is the mean absolute water-budget residual `|P - E - Q - dS|` of the held-out unit in mm/month,
`nse_cell_median` the median per-cell NSE against the truth, `bias_cell_mae` the mean relative bias per cell.
"""),
    code("""
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
r = res["residual_mae"].unstack()
x = np.arange(len(r))
ax.bar(x - 0.2, r["before"], 0.4, label="product (before)", color="tab:red")
ax.bar(x + 0.2, r["after"], 0.4, label="closure-corrected (after)", color="tab:blue")
ax.set_xticks(x, r.index)
ax.set_ylabel("|P - E - Q - dS| [mm/month]")
ax.set_title("water-budget residual of each held-out unit")
ax.legend();
"""),
    code("""
def cells(a):
    return xr.DataArray(a, dims=("time", "lat", "lon"), coords={"time": problem.time, "lat": monthly["lat"],
                                                               "lon": monthly["lon"]})


truth_all, product, fixed = cells(problem.truth), cells(problem.product), cells(corrected)
inside = xr.DataArray(problem.cell_unit().reshape(problem.shape) >= 0, dims=("lat", "lon"))
bias = {name: ((e.mean("time") / truth_all.mean("time")) - 1).where(inside).rename("relative bias")
        for name, e in (("product", product), ("corrected (out of fold)", fixed))}
nse_t = {name: nse(truth_all, e, dim="time").where(inside).rename("NSE vs truth")
         for name, e in (("product", product), ("corrected (out of fold)", fixed))}
fig = plt.figure(figsize=(13, 9), layout="constrained")
for k, name in enumerate(bias):
    hp.skill_map(bias[name], ax=fig.add_subplot(2, 2, k + 1, projection=ccrs.PlateCarree()), cmap="RdBu_r",
                 vmin=-0.5, vmax=0.5, title=f"{name}: relative bias of mean evaporation", **kw)
    hp.skill_map(nse_t[name], ax=fig.add_subplot(2, 2, k + 3, projection=ccrs.PlateCarree()), vmin=0, vmax=1,
                 title=f"{name}: NSE against the truth", **kw)
"""),
    md("""
The corrected field is closer to the truth in cells of catchments it was never trained on, and the water budget
of those catchments closes better. On real data the truth is unknown: the residual of held-out catchments is
what one can check: `BENCHMARKS.md` reports it for the Moselle (`et.nc` against gauge 398's budget).
"""),
]

# --------------------------------------------------------------------------------------------------------------
NB03 = [
    md("""
# 03 · Memory: train under a budget, predict grids larger than memory

Training memory is dominated by the activations saved for the backward pass; inference memory grows with the
grid. `hydroml.memory` measures them, plans activation checkpointing under a byte budget, and runs
fully convolutional models tile by tile, exactly. Every figure below is **measured** on this machine when the
notebook runs.
"""),
    code(SETUP),
    md("""
## 1. An LSTM over 365-day windows
A batch of real windows from the demo basins, and the discharge LSTM. `memory.profile` cuts the model into
stages (chunks of 15 time steps) and measures, for each, the bytes it saves for backward (counted with
`saved_tensors_hooks`, deduplicated by storage), the bytes of its input state, and its forward time.
"""),
    code("""
import hydroml.catalog
import hydroml.plot as hp
from hydroml import memory
from hydroml.datasets import BasinDataset
from hydroml.models import create

ds = hydroml.catalog.open("demo", product="basins")
dyn = ["pr", "tas", "rsds", "evspsblpot"]
static = ["area_km2", "elev_mean", "aridity", "frac_snow", "forest_frac", "soil_capacity"]
windows = BasinDataset(ds, dyn, static, ["q_mm"], 365, period=("2001-01-01", "2009-12-31"))
batch = windows.get_batch(np.arange(0, len(windows), len(windows) // 32)[:32])
torch.manual_seed(0)
lstm = create("lstm", n_dynamic=len(dyn), n_static=len(static), n_targets=1, hidden_size=64)
prof = memory.profile(lstm, batch, chunk=15, repeat=1)
print(prof.table())
"""),
    md("""
The planner finds the schedule with the least recomputation whose predicted peak fits the budget (a dynamic
programme over the chain of stages). Here: one eighth of what the unchanged model keeps.
"""),
    code("""
no_ckpt = memory.store_all(prof)
schedule = memory.plan(prof, no_ckpt.predicted_peak_bytes // 8)
print(schedule.summary())
ax = hp.memory_plan(prof, schedule, title="LSTM, 365 steps, batch 32, hidden 64: stages and the plan")
"""),
    md("""
Apply it and measure one training step with and without: the peak of saved activation bytes (counted the same
way), the step time, and the gradients, which must not change.
"""),
    code("""
import time


def step(model, schedule):
    model.set_checkpoint_schedule(schedule)
    model.zero_grad()
    with memory.SavedTensorCounter(exclude=[model]) as counter:
        t0 = time.perf_counter()
        y_hat = model(batch)["y_hat"][:, -1]
        loss = ((y_hat - torch.nan_to_num(batch["y"][:, -1])) ** 2).mean()
        loss.backward()
        seconds = time.perf_counter() - t0
    return counter.peak_bytes, seconds, [p.grad.clone() for p in model.parameters()]


measured = {}
for name, items in (("no checkpointing", None), ("planned", schedule.to_time_items())):
    runs = [step(lstm, items) for _ in range(3)]
    measured[name] = {"peak saved": runs[-1][0], "step s": min(r[1] for r in runs), "grads": runs[-1][2]}
diff = max(float((a - b).abs().max()) for a, b in zip(measured["no checkpointing"]["grads"], measured["planned"]["grads"]))
for name, m in measured.items():
    print(f"{name:>17}: peak saved activations {memory.format_bytes(m['peak saved']):>10}, step {m['step s']:.3f} s")
ratio = measured["no checkpointing"]["peak saved"] / measured["planned"]["peak saved"]
print(f"{ratio:.1f}x less activation memory; largest gradient difference {diff:.1e}")
assert diff < 1e-4
"""),
    md("""
In a training configuration this is one key, `train: {memory_budget: "1.5GB"}`: training plans the schedule for
the configured batch and sequence length from the model's own estimate of its stage costs
(`model.stages(seq_len, batch_size)`) and applies it. `hydroml memory plan CONFIG` profiles the model on a
batch of the configured shape and prints the per-stage table, the schedule and the predicted peak.

## 2. Tiled inference of a U-Net
`memory.tiled_predict` runs a fully convolutional model tile by tile with a halo taken from the model's
receptive field, aligned to its total stride, so the result equals the untiled prediction. First, exactness on a
grid that fits:
"""),
    code("""
import tempfile
from pathlib import Path

from safetensors.torch import save_file

torch.manual_seed(0)
UNET = dict(in_channels=4, out_channels=1, base_width=8, depth=3, norm="none")
unet = create("unet", **UNET).eval()
print(unet.receptive_field())
x = torch.randn(4, 300, 300)
with torch.inference_mode():
    whole = unet({"x": x[None]})["y_hat"][0].numpy()
tiled = memory.tiled_predict(unet, x.numpy(), tile=64, progress=False)
print("max |tiled - untiled| =", float(np.abs(tiled - whole).max()))
"""),
    md("""
Now the memory. Each measurement runs in a **fresh process** that reads the input grid (4 channels) from a
NetCDF file and reports its peak resident memory (`VmHWM`): a process that only imports torch and hydroml
gives the floor; the untiled prediction loads the grid and runs it whole; the tiled one reads tile by tile and
writes the output tile by tile to NetCDF, never holding the grid.
"""),
    code("""
import json
import subprocess
import sys
import textwrap

import xarray as xr

work = Path(tempfile.mkdtemp(prefix="hydroml_tiles_"))
save_file(unet.state_dict(), str(work / "unet.safetensors"))
for n in (1024, 1536):
    rng = np.random.default_rng(n)
    xr.Dataset({f"c{k}": (("y", "x"), rng.standard_normal((n, n), dtype=np.float32)) for k in range(4)}).to_netcdf(
        work / f"grid{n}.nc"
    )

WORKER = textwrap.dedent(f'''
    import json, sys, time
    import torch, xarray as xr
    from safetensors.torch import load_file
    from hydroml.memory import tiled_predict
    from hydroml.models import create
    torch.set_num_threads(1)
    mode, n = sys.argv[1], int(sys.argv[2])
    net = create("unet", **{UNET!r}).eval()
    net.load_state_dict(load_file("{work}/unet.safetensors"))
    t0 = time.perf_counter()
    if mode == "untiled":
        with xr.open_dataset(f"{work}/grid{{n}}.nc") as ds:
            x = torch.from_numpy(ds[["c0", "c1", "c2", "c3"]].to_array().values)[None]
        with torch.inference_mode():
            y = net({{"x": x}})["y_hat"]
    elif mode == "tiled":
        with xr.open_dataset(f"{work}/grid{{n}}.nc") as ds:
            tiled_predict(net, ds, variables=["c0", "c1", "c2", "c3"], tile=256, out=f"{work}/out{{n}}.nc",
                          progress=False)
    seconds = time.perf_counter() - t0
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
    print(json.dumps({{"mode": mode, "grid": n, "seconds": round(seconds, 2), "peak_rss_mb": int(hwm) / 1024}}))
''')


def measure(mode, n):
    out = subprocess.run([sys.executable, "-c", WORKER, mode, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


import pandas as pd

rows = [measure("floor", 0), measure("untiled", 1024), measure("tiled", 1024), measure("tiled", 1536)]
table = pd.DataFrame(rows)
floor = table.loc[0, "peak_rss_mb"]
table["above floor MB"] = (table["peak_rss_mb"] - floor).round(0)
table
"""),
    code("""
per_cell = table.loc[1, "above floor MB"] / 1024**2  # untiled: MB per grid cell, measured at 1024 x 1024
est = per_cell * 1536**2
budget = 1.5 * table.loc[1, "above floor MB"]  # say this job may use 1.5x what the untiled 1024 x 1024 run took
print(f"untiled 1024 x 1024 needed {table.loc[1, 'above floor MB']:.0f} MB above the floor; tiled "
      f"{table.loc[2, 'above floor MB']:.0f} MB on the same grid and {table.loc[3, 'above floor MB']:.0f} MB on "
      f"1536 x 1536, where the untiled run would need about {est:.0f} MB (extrapolated per cell).\\n"
      f"With {budget:.0f} MB to spare, the untiled run could not afford 1536 x 1536; the tiled one used "
      f"{100 * table.loc[3, 'above floor MB'] / budget:.0f}% of it.")
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
labels = ["untiled 1024²", "tiled 1024²", "tiled 1536²", "untiled 1536²\\n(extrapolated)"]
ax.bar(labels, [*table["above floor MB"][1:], est], color=["tab:red", "tab:blue", "tab:blue", "0.8"])
ax.axhline(budget, color="k", ls="--", lw=0.8)
ax.text(0.02, budget, " memory to spare", va="bottom", fontsize=8, transform=ax.get_yaxis_transform())
ax.set_ylabel("peak memory above the floor [MB]");
with xr.open_dataset(work / "out1536.nc") as out:
    print(out)
"""),
    md("""
The tiled peak depends on the tile, not on the grid: the same code predicts continental grids on a laptop.
`benchmarks/bench_memory.py` measures the same on larger cases (8192 x 8192 x 12 channels), with the
checkpointing planner against `sqrt(n)` segments and reversible blocks.
"""),
]

# --------------------------------------------------------------------------------------------------------------
NB04 = [
    md("""
# 04 · Real basins: the workflow on CAMELS-US

The same workflow as `01_discharge_quickstart`, on **real** data opened through a catalog entry: four CAMELS-US
basins (Newman et al. 2015; Addor et al. 2017) with Daymet basin-mean forcing and USGS discharge, 2000-2002.
The record is short: two years to train, one to test, so expect modest skill.

The data root is a parameter: set `HYDROML_DATA_ROOT` (CI points it at `../shared/data`), or edit the next
cell.
"""),
    code(
        """
import os

DATA_ROOT = os.environ.get("HYDROML_DATA_ROOT", "../../shared/data")  # parameter: where the data sets live
""",
        tags=["parameters"],
    ),
    code(SETUP),
    code("""
import hydroml.catalog
import hydroml.plot as hp

entry = hydroml.catalog.get("camels_us_4basins")
print(entry.description.strip(), "\\nLicence:", entry.licence)
ds = hydroml.catalog.open("camels_us_4basins", root=DATA_ROOT, product="daymet", progress=False)
ds[["pr", "tasmax", "tasmin", "rsds", "vp", "q_mm", "gauge_lat", "gauge_lon"]]
"""),
    md("""
## Train
Daily precipitation, temperatures, radiation and vapour pressure, and six catchment attributes; 2000-2001 for
training, 2002 for testing. The record is too short to spare a validation period, so the number of epochs is
fixed in advance (with a longer record, add `validation_period` and `early_stopping`).
"""),
    code("""
import tempfile
from pathlib import Path

from hydroml.training import train

DYNAMIC = ["pr", "tasmax", "tasmin", "rsds", "vp"]
STATIC = ["area_km2", "elev_mean", "frac_forest", "aridity", "p_mean", "baseflow_index"]
TRAIN, TEST = ["2000-01-01", "2001-12-31"], ["2002-01-01", "2002-12-31"]
config = {
    "name": "camels4",
    "seed": 0,
    "data": {
        "source": "camels_us_4basins",
        "root": str(DATA_ROOT),
        "product": "daymet",
        "dynamic_inputs": DYNAMIC,
        "static_inputs": STATIC,
        "targets": ["q_mm"],
        "train_period": TRAIN,
        "test_period": TEST,
        "seq_len": 90,
    },
    "model": {"name": "lstm", "hidden_size": 32},
    "optimiser": {"name": "adam", "lr": 1e-2},
    "train": {"epochs": 10, "batch_size": 64, "loss": "nse"},
}
runs = Path(os.environ.get("HYDROML_RUNS", tempfile.mkdtemp(prefix="hydroml_runs_")))
run_dir = train(config, runs_dir=runs, progress=False)
hp.training_curves(run_dir);
"""),
    md("""
## Forecast and evaluate against climatology
"""),
    code("""
from hydroml.evaluation import climatology, evaluate, nse, skill_score
from hydroml.forecast import forecast

pred = forecast(run_dir, ds[DYNAMIC + STATIC], *TEST)
obs = ds["q_mm"].sel(time=slice(*TEST))
sim = pred["q_mm"]
clim = climatology(ds["q_mm"], ref_period=TRAIN, smooth=31).sel(time=obs["time"])
table = evaluate(obs, sim, ["nse", "kge", "pbias"], dim="time").to_dataframe()[["nse", "kge", "pbias"]]
table["nse_climatology"] = nse(obs, clim, dim="time").to_series()
table["nse_skill_over_climatology"] = skill_score("nse", obs, sim, clim, dim="time").to_series()
table.round(3)
"""),
    code("""
fig, axes = plt.subplots(len(ds["basin"]), 1, figsize=(12, 2.6 * len(ds["basin"])), layout="constrained")
for ax, basin in zip(axes, ds["basin"].values):
    hp.hydrograph(obs, {"LSTM": sim, "climatology": clim}, precip=ds["pr"], basin=basin, ax=ax,
                  title=f"USGS {basin}: NSE {table.loc[basin, 'nse']:.2f}")
"""),
    code("""
import cartopy.crs as ccrs

fig = plt.figure(figsize=(14, 4.5), layout="constrained")
hp.flow_duration_curve({"observed": obs.mean("basin"), "LSTM": sim.mean("basin")}, ax=fig.add_subplot(1, 3, 1),
                       title="flow-duration curves (mean of the 4 basins)")
hp.metric_cdf({"LSTM": table["nse"].to_numpy(), "climatology": table["nse_climatology"].to_numpy()},
              metric="NSE (2002)", ax=fig.add_subplot(1, 3, 2))
ax = hp.skill_map(
    table["nse"].to_xarray().rename("NSE 2002"),
    lat=ds["gauge_lat"].values,
    lon=ds["gauge_lon"].values,
    pad=2.0,
    ax=fig.add_subplot(1, 3, 3, projection=ccrs.LambertConformal(central_longitude=-75, central_latitude=40)),
    title="LSTM NSE at the USGS gauges",
)
"""),
    md("""
Coastlines come from cartopy's offline data (`apt-get install python-cartopy-data`); without it the map is
drawn without them and a warning says so. hydroml never downloads them.
"""),
]


def build(name: str, cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for k, c in enumerate(nb.cells):
        c["id"] = f"{name[:2]}-{k:02d}"  # stable ids: no diff noise when rebuilding
    nbformat.validate(nb)
    return nb


NOTEBOOKS = {
    "01_discharge_quickstart.ipynb": NB01,
    "02_gridded_evaporation.ipynb": NB02,
    "03_memory.ipynb": NB03,
    "04_real_basins.ipynb": NB04,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(build(name, cells)) + "\n"
        path = HERE / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
