"""`python -m svg_lightning.convert`: the checkpoints released with the SVG reference code (whole
pickled PyTorch 0.3/0.4 modules plus the training options) become ordinary svg_lightning
checkpoints, read without running the file's code.

The files are built here with the reference's structure: module classes named as the reference
names them (``models.dcgan_64.encoder`` ...), made picklable by fake ``models`` packages that are
removed again before converting, layers of the reference's layout, BatchNorm without
``num_batches_tracked``, a ``_backend`` on every module, LSTM ``hidden`` states (PyTorch 0.3
``Variable``s in one file), an ``argparse.Namespace`` holding the optimizer class, CUDA storages,
and both serialization formats."""

from __future__ import annotations

import argparse
import builtins
import json
import os
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.backends.thnn
from torch import nn

from svg_lightning import runs
from svg_lightning.api import train
from svg_lightning.checkpoint import load_model, read_checkpoint
from svg_lightning.convert import Conversion, convert
from svg_lightning.convert.command import convert_main
from svg_lightning.errors import CheckpointError
from svg_lightning.evaluate import evaluate
from svg_lightning.files import sha256
from svg_lightning.module import SVGModule
from tests.helpers import compose_cfg, run_cli

# ---------------------------------------------------------------------------------------------
# The reference networks (the paper's appendix; layer names as in the released files)


def named(module_name: str, name: str):
    def rename(cls):
        cls.__module__, cls.__qualname__, cls.__name__ = module_name, name, name
        return cls

    return rename


def lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


@named("models.dcgan_64", "dcgan_conv")
class DcganConv(nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(nin, nout, 4, 2, 1), nn.BatchNorm2d(nout), lrelu())

    def forward(self, x):
        return self.main(x)


@named("models.dcgan_64", "dcgan_upconv")
class DcganUpconv(nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nin, nout, 4, 2, 1), nn.BatchNorm2d(nout), lrelu()
        )

    def forward(self, x):
        return self.main(x)


@named("models.dcgan_64", "encoder")
class DcganEncoder(nn.Module):
    def __init__(self, dim, nc=1):
        super().__init__()
        self.dim, nf = dim, 64
        self.c1, self.c2 = DcganConv(nc, nf), DcganConv(nf, nf * 2)
        self.c3, self.c4 = DcganConv(nf * 2, nf * 4), DcganConv(nf * 4, nf * 8)
        self.c5 = nn.Sequential(nn.Conv2d(nf * 8, dim, 4, 1, 0), nn.BatchNorm2d(dim), nn.Tanh())

    def forward(self, x):
        skips = []
        for stage in (self.c1, self.c2, self.c3, self.c4):
            x = stage(x)
            skips.append(x)
        return self.c5(x).view(-1, self.dim), skips


@named("models.dcgan_64", "decoder")
class DcganDecoder(nn.Module):
    def __init__(self, dim, nc=1):
        super().__init__()
        self.dim, nf = dim, 64
        self.upc1 = nn.Sequential(
            nn.ConvTranspose2d(dim, nf * 8, 4, 1, 0), nn.BatchNorm2d(nf * 8), lrelu()
        )
        self.upc2 = DcganUpconv(nf * 16, nf * 4)
        self.upc3 = DcganUpconv(nf * 8, nf * 2)
        self.upc4 = DcganUpconv(nf * 4, nf)
        self.upc5 = nn.Sequential(nn.ConvTranspose2d(nf * 2, nc, 4, 2, 1), nn.Sigmoid())

    def forward(self, inputs):
        vec, skips = inputs
        d = self.upc1(vec.view(-1, self.dim, 1, 1))
        for stage, skip in zip((self.upc2, self.upc3, self.upc4, self.upc5), reversed(skips)):
            d = stage(torch.cat([d, skip], 1))
        return d


@named("models.vgg_64", "vgg_layer")
class VggLayer(nn.Module):
    def __init__(self, nin, nout):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(nin, nout, 3, 1, 1), nn.BatchNorm2d(nout), lrelu())

    def forward(self, x):
        return self.main(x)


def vgg_stack(*widths: int) -> nn.Sequential:
    return nn.Sequential(*(VggLayer(a, b) for a, b in zip(widths, widths[1:])))


@named("models.vgg_64", "encoder")
class VggEncoder(nn.Module):
    def __init__(self, dim, nc=1):
        super().__init__()
        self.dim = dim
        self.c1, self.c2 = vgg_stack(nc, 64, 64), vgg_stack(64, 128, 128)
        self.c3, self.c4 = vgg_stack(128, 256, 256, 256), vgg_stack(256, 512, 512, 512)
        self.c5 = nn.Sequential(nn.Conv2d(512, dim, 4, 1, 0), nn.BatchNorm2d(dim), nn.Tanh())
        self.mp = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)

    def forward(self, x):
        skips = [self.c1(x)]
        for stage in (self.c2, self.c3, self.c4):
            skips.append(stage(self.mp(skips[-1])))
        return self.c5(self.mp(skips[-1])).view(-1, self.dim), skips


@named("models.vgg_64", "decoder")
class VggDecoder(nn.Module):
    def __init__(self, dim, nc=1):
        super().__init__()
        self.dim = dim
        self.upc1 = nn.Sequential(
            nn.ConvTranspose2d(dim, 512, 4, 1, 0), nn.BatchNorm2d(512), lrelu()
        )
        self.upc2 = vgg_stack(1024, 512, 512, 256)
        self.upc3 = vgg_stack(512, 256, 256, 128)
        self.upc4 = vgg_stack(256, 128, 64)
        self.upc5 = nn.Sequential(
            VggLayer(128, 64), nn.ConvTranspose2d(64, nc, 3, 1, 1), nn.Sigmoid()
        )
        self.up = nn.UpsamplingNearest2d(scale_factor=2)

    def forward(self, inputs):
        vec, skips = inputs
        d = self.upc1(vec.view(-1, self.dim, 1, 1))
        for stage, skip in zip((self.upc2, self.upc3, self.upc4, self.upc5), reversed(skips)):
            d = stage(torch.cat([self.up(d), skip], 1))
        return d


class _Recurrent(nn.Module):
    """The reference LSTMs: a list of LSTMCells stepped once per call, state in ``hidden``."""

    def __init__(self, input_size, output_size, hidden_size, n_layers, batch_size):
        super().__init__()
        self.input_size, self.output_size, self.hidden_size = input_size, output_size, hidden_size
        self.n_layers, self.batch_size = n_layers, batch_size
        self.embed = nn.Linear(input_size, hidden_size)
        self.lstm = nn.ModuleList([nn.LSTMCell(hidden_size, hidden_size) for _ in range(n_layers)])
        self.hidden = self.init_hidden()

    def init_hidden(self):
        zeros = lambda: torch.zeros(self.batch_size, self.hidden_size)
        return [(zeros(), zeros()) for _ in range(self.n_layers)]

    def step(self, x):
        h_in = self.embed(x.view(-1, self.input_size))
        for i, cell in enumerate(self.lstm):
            self.hidden[i] = cell(h_in, self.hidden[i])
            h_in = self.hidden[i][0]
        return h_in


@named("models.lstm", "lstm")
class RefLSTM(_Recurrent):
    def __init__(self, *args):
        super().__init__(*args)
        self.output = nn.Sequential(nn.Linear(self.hidden_size, self.output_size), nn.Tanh())

    def forward(self, x):
        return self.output(self.step(x))


@named("models.lstm", "gaussian_lstm")
class RefGaussianLSTM(_Recurrent):
    def __init__(self, *args):
        super().__init__(*args)
        self.mu_net = nn.Linear(self.hidden_size, self.output_size)
        self.logvar_net = nn.Linear(self.hidden_size, self.output_size)

    def forward(self, x, eps):
        h = self.step(x)
        mu, logvar = self.mu_net(h), self.logvar_net(h)
        return mu + torch.exp(0.5 * logvar) * eps, mu, logvar


FAKE_PACKAGES = {
    "models.dcgan_64": (DcganConv, DcganUpconv, DcganEncoder, DcganDecoder),
    "models.vgg_64": (VggLayer, VggEncoder, VggDecoder),
    "models.lstm": (RefLSTM, RefGaussianLSTM),
}


@contextmanager
def reference_code_importable():
    """The fake ``models`` packages pickle needs to name the classes; gone again on exit."""
    with pytest.MonkeyPatch.context() as mp:
        root = types.ModuleType("models")
        mp.setitem(sys.modules, "models", root)
        for name, classes in FAKE_PACKAGES.items():
            mod = types.ModuleType(name)
            for cls in classes:
                setattr(mod, cls.__qualname__, cls)
            setattr(root, name.split(".")[1], mod)
            mp.setitem(sys.modules, name, mod)
        yield


# ---------------------------------------------------------------------------------------------
# What PyTorch 0.3/0.4 pickled beyond the layers


class ThnnBackend:
    """Modules of PyTorch <= 0.4 carry ``_backend``, pickled as a call of this function."""

    def __reduce__(self):
        return torch.nn.backends.thnn._get_thnn_function_backend, ()


class Variable03:
    """A PyTorch 0.3 Variable as it pickled: Variable(data), then (requires_grad, volatile,
    hooks)."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return torch.autograd.variable.Variable, (self.data,), (False, False, None)


@dataclass
class Reference:
    """A reference checkpoint file and the networks it holds."""

    nets: dict[str, nn.Module]
    opt: argparse.Namespace
    path: Path


def options(**changes) -> argparse.Namespace:
    """The training script's options (its SM-MNIST defaults), with ``changes``."""
    opt = dict(
        lr=0.002, beta1=0.9, batch_size=100, log_dir="logs/lp/smmnist-2/model", model_dir="",
        name="", data_root="data", optimizer=torch.optim.Adam, niter=300, seed=1,
        epoch_size=600, image_width=64, channels=1, dataset="smmnist", n_past=5, n_future=10,
        n_eval=30, rnn_size=256, prior_rnn_layers=1, posterior_rnn_layers=1,
        predictor_rnn_layers=2, z_dim=10, g_dim=128, beta=0.0001, model="dcgan",
        data_threads=5, num_digits=2, last_frame_skip=False, max_step=15,
    )  # fmt: skip
    opt.update(changes)
    return argparse.Namespace(**{k: v for k, v in opt.items() if v is not None})


def build_nets(opt: argparse.Namespace, lp: bool) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    enc, dec = {"dcgan": (DcganEncoder, DcganDecoder), "vgg": (VggEncoder, VggDecoder)}[opt.model]
    layers = lambda key: getattr(opt, f"{key}_rnn_layers", getattr(opt, "rnn_layers", None))
    g, z, rnn, b = opt.g_dim, opt.z_dim, opt.rnn_size, opt.batch_size
    nets = {
        "encoder": enc(g, opt.channels),
        "decoder": dec(g, opt.channels),
        "frame_predictor": RefLSTM(g + z, g, rnn, layers("predictor"), b),
        "posterior": RefGaussianLSTM(g, z, rnn, layers("posterior"), b),
    }
    if lp:
        nets["prior"] = RefGaussianLSTM(g, z, rnn, layers("prior"), b)
    for net in nets.values():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # trained statistics, so eval mode matters
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.normal_(1, 0.1)
                m.bias.data.normal_(0, 0.1)
                del m._buffers["num_batches_tracked"]  # PyTorch < 0.4.1 had none
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):  # keeps the signal's scale
                nn.init.kaiming_normal_(m.weight, a=0.2)
            m._backend = ThnnBackend()
    with torch.no_grad():  # so that z visibly changes the frames: wide posterior and prior
        for gaussian in (nets["posterior"], nets.get("prior")):
            if gaussian is not None:
                gaussian.logvar_net.bias.fill_(2.0)
        nets["frame_predictor"].embed.weight[:, opt.g_dim :].mul_(10)
        nets["frame_predictor"].output[0].weight.mul_(10)
    return {k: v.eval() for k, v in nets.items()}


def save_reference(path: Path, nets, opt, legacy: bool, variables: bool = False) -> Path:
    """``torch.save`` as the training script saves, from CUDA (storage locations 'cuda:0')."""
    hidden = {k: net.hidden for k, net in nets.items() if hasattr(net, "hidden")}
    with reference_code_importable(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        # The legacy format stores each module class's source, as the released files do.
        source = (["class encoder(nn.Module):\n", "    pass\n"], 1, "models/dcgan_64.py")
        mp.setattr(torch.serialization, "get_source_lines_and_file", lambda obj: source)
        for k, state in hidden.items():
            nets[k].hidden = [tuple(map(Variable03, s)) if variables else s for s in state]
        try:
            torch.save({**nets, "opt": opt}, path, _use_new_zipfile_serialization=not legacy)
        finally:
            for k, state in hidden.items():
                nets[k].hidden = state
    assert "models" not in sys.modules
    return path


def make_reference(root: Path, name: str, lp: bool, legacy: bool, variables=False, **opt):
    opt = options(**opt)
    nets = build_nets(opt, lp)
    return Reference(nets, opt, save_reference(root / name, nets, opt, legacy, variables))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("convert")


def converted(ref: Reference, out: Path) -> Conversion:
    assert "models" not in sys.modules
    done = convert(ref.path, out)
    assert "models" not in sys.modules  # nothing of the reference code was imported
    return done


@pytest.fixture(scope="module")
def smmnist_lp(root):
    """SVG-LP on two-digit SM-MNIST (dcgan64), in PyTorch 0.3's legacy format with Variables."""
    ref = make_reference(root, "svglp_smmnist2.pth", lp=True, legacy=True, variables=True)
    return ref, converted(ref, root / "smmnist" / "model" / "svglp_smmnist2.ckpt")


@pytest.fixture(scope="module")
def bair_lp(root):
    """SVG-LP on BAIR (vgg64, 3 channels, last_frame_skip), in the legacy format."""
    ref = make_reference(
        root, "svglp_bair.pth", lp=True, legacy=True, dataset="bair", model="vgg",
        channels=3, z_dim=64, n_past=2, last_frame_skip=True,
    )  # fmt: skip
    return ref, converted(ref, root / "bair" / "svglp_bair.ckpt")


@pytest.fixture(scope="module")
def smmnist_fp(root):
    """SVG-FP (no prior) in the zip format, with the older options' single ``rnn_layers``."""
    ref = make_reference(
        root, "svgfp_smmnist.pth", lp=False, legacy=False, rnn_layers=2,
        predictor_rnn_layers=None, posterior_rnn_layers=None, prior_rnn_layers=None,
    )  # fmt: skip
    return ref, converted(ref, root / "fp" / "svgfp.ckpt")


# ---------------------------------------------------------------------------------------------
# Every tensor, and the same frames


def check_tensors(ref: Reference, done: Conversion) -> None:
    ckpt = read_checkpoint(done.out)
    state = ckpt["state_dict"]
    theirs = {f"{k}.{n}": t for k, net in ref.nets.items() for n, t in net.state_dict().items()}
    assert set(done.mapping) == set(theirs)  # every reference tensor used
    assert len(set(done.mapping.values())) == len(theirs)  # each of ours assigned once
    assert set(done.mapping.values()) | set(done.filled) == set(state)
    for name, tensor in theirs.items():
        assert torch.equal(state[done.mapping[name]], tensor), name
    bn = [k for k in state if k.endswith("num_batches_tracked")]
    assert sorted(done.filled) == sorted(bn) and all(state[k] == 0 for k in bn)
    model = load_model(done.out)  # loads with weights_only=True into SVGModule(**hp)
    assert ckpt["hyper_parameters"] == dict(SVGModule(**ckpt["hyper_parameters"]).hparams)
    assert dict(model.hparams) == ckpt["hyper_parameters"]


@torch.no_grad()
def reference_samples(ref: Reference, cond, n_future, noise) -> torch.Tensor:
    """Generation frame by frame as the reference's generation script does it (E/D in eval mode
    here), with the standard-normal draws of ``noise`` (B, S, n_cond - 1 + n_future, z)."""
    nets, skip_previous = ref.nets, ref.opt.last_frame_skip
    enc, dec, pred, post = (nets[k] for k in ("encoder", "decoder", "frame_predictor", "posterior"))
    prior = nets.get("prior")
    b, n_cond = cond.shape[:2]
    samples = []
    for s in range(noise.shape[1]):
        for net in (pred, post, prior):
            if net is not None:
                net.batch_size = b
                net.hidden = net.init_hidden()
        frames, x_in = [], cond[:, 0]
        for i in range(1, n_cond + n_future):
            h, skip_now = enc(x_in)
            if skip_previous or i < n_cond:
                skip = skip_now
            eps = noise[:, s, i - 1]
            if i < n_cond:
                z = post(enc(cond[:, i])[0], eps)[0]
                if prior is not None:
                    prior(h, eps)  # steps its state; the draw is unused
                pred(torch.cat([h, z], 1))
                x_in = cond[:, i]
            else:
                z = prior(h, eps)[0] if prior is not None else eps
                x_in = dec([pred(torch.cat([h, z], 1)), skip])
                frames.append(x_in)
        samples.append(torch.stack(frames, 1))
    return torch.stack(samples, 1)


def check_generation(ref: Reference, done: Conversion, n_cond: int, n_future: int = 3) -> None:
    torch.manual_seed(1)
    b, s, c = 2, 2, ref.opt.channels
    cond = torch.rand(b, n_cond, c, 64, 64)
    noise = torch.randn(b, s, n_cond - 1 + n_future, ref.opt.z_dim)
    if "prior" not in ref.nets:  # SVG-FP generation conditions on the posterior mean
        noise[:, :, : n_cond - 1] = 0
    ours = load_model(done.out).svg.sample(cond, n_future, s, noise=noise).frames
    theirs = reference_samples(ref, cond, n_future, noise)
    assert ours.shape == theirs.shape == (b, s, n_future, c, 64, 64)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    assert (ours[:, 0] - ours[:, 1]).abs().max() > 1e-2  # z changes the frames, visibly


def test_smmnist_lp_legacy_format(smmnist_lp):
    ref, done = smmnist_lp
    check_tensors(ref, done)
    hp = done.hyper_parameters
    assert (hp["variant"], hp["backbone"], hp["channels"], hp["z_dim"]) == ("lp", "dcgan64", 1, 10)
    assert (hp["predictor_layers"], hp["posterior_layers"], hp["prior_layers"]) == (2, 1, 1)
    assert (hp["skip"], hp["n_past"], hp["n_future"], hp["beta"]) == ("reference", 5, 10, 1e-4)
    mapping = done.mapping  # the layout rule, spelled out for a few tensors
    assert mapping["encoder.c1.main.0.weight"] == "svg.encoder.stages.0.0.weight"
    assert mapping["encoder.c5.1.running_var"] == "svg.encoder.code.1.running_var"
    assert mapping["decoder.upc1.0.weight"] == "svg.decoder.uncode.0.weight"
    assert mapping["decoder.upc2.main.1.bias"] == "svg.decoder.stages.0.1.bias"
    assert mapping["decoder.upc5.0.weight"] == "svg.decoder.stages.3.weight"
    assert mapping["frame_predictor.lstm.1.weight_hh"] == "svg.frame_predictor.lstm.weight_hh_l1"
    assert mapping["posterior.mu_net.weight"] == "svg.posterior.mu.weight"
    check_generation(ref, done, n_cond=3)


def test_bair_lp_vgg_three_channels(bair_lp):
    ref, done = bair_lp
    check_tensors(ref, done)
    hp = done.hyper_parameters
    assert (hp["backbone"], hp["channels"], hp["z_dim"], hp["skip"]) == ("vgg64", 3, 64, "previous")
    assert done.mapping["encoder.c3.2.main.0.weight"] == "svg.encoder.stages.2.2.0.weight"
    assert done.mapping["decoder.upc5.1.bias"] == "svg.decoder.stages.3.1.bias"
    assert done.dataset == "bair"
    check_generation(ref, done, n_cond=2)


def test_smmnist_fp_zip_format(smmnist_fp):
    ref, done = smmnist_fp
    check_tensors(ref, done)
    hp = done.hyper_parameters
    assert (hp["variant"], hp["predictor_layers"], hp["posterior_layers"]) == ("fp", 2, 2)
    assert not any(k.startswith("svg.prior.") for k in done.mapping.values())
    check_generation(ref, done, n_cond=4)


def test_both_formats_give_the_same_checkpoint(root, smmnist_lp):
    ref, done = smmnist_lp
    zipped = save_reference(root / "zip.pth", ref.nets, ref.opt, legacy=False)
    again = converted(Reference(ref.nets, ref.opt, zipped), root / "zip" / "zip.ckpt")
    a, b = read_checkpoint(done.out), read_checkpoint(again.out)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["hyper_parameters"] == b["hyper_parameters"]


def test_checkpoint_entries(smmnist_lp):
    ref, done = smmnist_lp
    ckpt = torch.load(done.out, map_location="cpu", weights_only=True)  # plain values only
    meta = ckpt[runs.META_KEY]
    assert meta["format"] == runs.CHECKPOINT_FORMAT
    assert meta["converted_from"] == {"file": ref.path.name, "sha256": sha256(ref.path)}
    cfg = meta["train_config"]
    assert cfg["task_name"] == "smmnist_lp" and cfg["n_past"] == 5 and cfg["n_future"] == 10
    assert cfg["data"]["_target_"].endswith("SMMNISTDataModule")
    assert (cfg["data"]["num_digits"], cfg["data"]["image_size"]) == (2, 64)
    assert {k: cfg["model"][k] for k in ckpt["hyper_parameters"]} == ckpt["hyper_parameters"]
    assert meta["reference_options"]["optimizer"] == "torch.optim.adam.Adam"
    assert (ckpt["epoch"], ckpt["global_step"], ckpt["lr_schedulers"]) == (0, 0, [])
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == 0.002
    assert "pytorch-lightning_version" in ckpt


# ---------------------------------------------------------------------------------------------
# What is refused


class Evil:
    def __init__(self, func, *args):
        self.call = (func, args)

    def __reduce__(self):
        return self.call


def refused(tmp_path: Path, payload, legacy: bool) -> tuple[str, Path]:
    src, out = tmp_path / "evil.pth", tmp_path / "out" / "evil.ckpt"
    torch.save(payload, src, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError) as err:
        convert(src, out)
    assert not out.exists() and not list(out.parent.glob("*"))
    return str(err.value), src


@pytest.mark.parametrize("legacy", [True, False])
def test_a_foreign_global_is_refused_and_not_run(tmp_path, legacy):
    marker = tmp_path / "ran"
    payload = {"encoder": Evil(os.system, f"touch {marker}"), "opt": options()}
    msg, src = refused(tmp_path, payload, legacy)
    assert f"{os.system.__module__}.system" in msg and str(src) in msg and "\n" not in msg
    assert not marker.exists()
    msg, _ = refused(tmp_path, {"opt": Evil(builtins.exec, "x = 1")}, legacy)
    assert "builtins.exec" in msg
    msg, _ = refused(tmp_path, {"encoder": nn.Conv3d(1, 1, 1)}, legacy)  # torch, but not SVG's
    assert "torch.nn.modules.conv.Conv3d" in msg


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.save is deprecated
def test_missing_and_foreign_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as err:
        convert(tmp_path / "nope.pth", tmp_path / "out.ckpt")
    assert "nope.pth" in str(err.value)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="cannot be read as a torch.save file") as err:
        convert(text, tmp_path / "out.ckpt")
    assert str(text) in str(err.value) and "\n" not in str(err.value)
    scripted = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), scripted)
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        convert(scripted, tmp_path / "out.ckpt")
    weights = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, weights)
    with pytest.raises(CheckpointError, match="not a checkpoint of the SVG reference code"):
        convert(weights, tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()


def test_a_tensor_that_does_not_fit_is_named(tmp_path):
    opt = options(g_dim=8, z_dim=2, rnn_size=8)
    nets = build_nets(opt, lp=True)
    nets["posterior"].mu_net = nn.Linear(8, 3)  # |z| = 3 against opt.z_dim = 2
    src = save_reference(tmp_path / "bad.pth", nets, opt, legacy=True)
    with pytest.raises(CheckpointError, match=r"posterior\.mu_net\.weight") as err:
        convert(src, tmp_path / "bad.ckpt")
    assert "svg.posterior.mu.weight" in str(err.value)
    nets["posterior"].mu_net = nn.Linear(8, 2)
    nets["posterior"].extra = nn.Linear(8, 2)
    src = save_reference(tmp_path / "extra.pth", nets, opt, legacy=False)
    with pytest.raises(CheckpointError, match=r"posterior\.extra\.weight has no counterpart"):
        convert(src, tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()


# ---------------------------------------------------------------------------------------------
# The converted checkpoint at work, without a run folder


def test_evaluate_without_a_run_folder(tmp_path, smmnist_lp):
    _, done = smmnist_lp
    assert not (runs.run_of(done.out) / runs.CONFIG).exists()
    cfg = compose_cfg(
        tmp_path, f"ckpt_path={done.out}", "eval.num_videos=2", "eval.num_samples=2",
        "eval.n_future=3", "eval.batch_size=2", "eval.grid_videos=1", "eval.grid_samples=2",
        "logger=csv", "trainer.accelerator=cpu", f"data_dir={tmp_path / 'data'}",
        config_name="eval",
    )  # fmt: skip
    evaluate(cfg)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (m["protocol"]["dataset"], m["protocol"]["n_past"]) == ("smmnist", 5)
    assert len(m["curves"]["ssim_bestofN"]["mean"]) == 3


@pytest.mark.slow
def test_resume_training_from_a_converted_checkpoint(tmp_path, smmnist_lp):
    _, done = smmnist_lp
    cfg = compose_cfg(
        tmp_path, *done.train_overrides, f"ckpt_path={done.out}", "trainer.max_steps=1",
        "trainer.val_check_interval=1", "trainer.accelerator=cpu", "logger=csv",
        "data.batch_size=2", "data.val_videos=2", "model.val_num_samples=2",
        "summary.enabled=false", "~callbacks.video_samples", "~callbacks.rich_progress_bar",
    )  # fmt: skip
    train(cfg)
    after = torch.load(
        tmp_path / "out" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    before = read_checkpoint(done.out)["state_dict"]
    assert after["global_step"] == 1 and after["state_dict"].keys() == before.keys()
    assert not torch.equal(after["state_dict"]["svg.encoder.code.0.weight"],
                           before["svg.encoder.code.0.weight"])  # fmt: skip


@pytest.mark.slow
def test_cli(tmp_path, smmnist_lp):
    ref, _ = smmnist_lp
    out = tmp_path / "cli.ckpt"
    r = run_cli("svg_lightning.convert", tmp_path, str(ref.path), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "dcgan64" in r.stdout and "smmnist" in r.stdout
    assert out.is_file()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage")
    r = run_cli("svg_lightning.convert", tmp_path, str(bad), "--out", str(tmp_path / "b.ckpt"))
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr
    assert convert_main([str(tmp_path / "missing.pth"), "--out", str(out)]) == 2
