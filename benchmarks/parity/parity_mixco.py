"""Step-for-step parity with the official MixCo code (github.com/Lee-Gihun/MixCo-Mixup-Contrast).

``python -m benchmarks.parity.parity_mixco OFFICIAL_CHECKOUT [--steps 10] [--batch-size 64]``

The official code is imported from the checkout at run time (nothing of it is copied into this project): for
MoCo v2 + MixCo ``moco/models/encoder.py::Encoder`` (torchvision ResNet-18, ``--mlp`` head, ``algo="mixco"``,
``single_gpu=True``) with ``moco/utils/loss_fn.py::MixcoLoss``, called as ``moco/pretrain.py::train`` calls them;
for SimCLR + MixCo ``simclr/pretrain.py::_step`` and ``_mix_step`` with ``ResNetSimCLR`` and ``NTXentLoss``. The
judge is ``parity_official.compare``, shared with the SelfCon parity benchmark. For each case both sides start from
the same weights (query encoder, key encoder, heads and the initial queue: the official model's initial state,
renamed to this package's names) and take the same SGD steps (momentum 0.9) on identical real CIFAR-10 batches
(the package's ``moco_v2`` / ``simclr`` augmentation at 32 px, fixed seed; the official ImageNet-stem ResNets take
32 px inputs) with the same mixing coefficients and pairing:

- ``official``: the official code;
- ``ours``: ``timm.create_model("mixco_resnet18", num_classes=0)`` + ``build_method("moco_mixco" | "simclr_mixco")``;
  MoCo with ``key_bn="none"`` (the official one-GPU path neither shuffles keys nor splits BatchNorm), both with
  ``gather=False`` (the official losses are per GPU; in one process this changes nothing);
- ``official_float64``: the official run again with only its loss computed in float64 (SimCLR: from the
  projections on, whose L2 normalisation ``_step`` does with the loss): the official code's own rounding noise, the
  yardstick for the differences.

A case passes when, at every step, the loss and the weights of each group (query encoder and head, key encoder and
head, queue) are within ``TOLERANCE_FACTOR`` x the largest noise seen so far (``parity_official.within_noise``).
From the third step on both codes amplify rounding (the official code against itself moves from ~1e-6 to ~1e-3 in
the loss within one step), so the first two steps and the weights after the first step are the sharp test.

What makes the official code run here, all done at run time, the checkout untouched:

- ``torch.Tensor.cuda`` is a no-op while the official MoCo forward runs (it moves its labels with ``.cuda()``);
- it draws λ with ``np.random.uniform``: its module's ``np`` is replaced, during its forward, by a feed that hands
  out the λ our method draws from its ``generator`` (the same seed replayed), so both sides mix with the same λ;
- the official MoCo updates its key encoder at the *start* of its forward, ours in ``after_optimizer_step``: the
  two coincide at every forward, so the official key encoder is compared as its next forward will find it (after
  the update, same arithmetic). Its first update, from the identical initial copy, changes it by rounding only;
  ours starts from that rounded copy, so that those ulps do not reach the queue;
- ``simclr/data_aug`` imports ``cv2`` (OpenCV, used only by its blur augmentation, not here): an empty stand-in
  module is registered while it is imported if OpenCV is not installed.

Also measured (``split_bn_effect``, not judged): how much our default for one process, ``key_bn="split"`` (two
chunks), changes a MoCo v2 + MixCo step against the official single-GPU code. ``--plant-mix-temperature-offset`` and
``--plant-lambda-shift`` give ours a wrong mix temperature or λ + shift: the check must then fail.

Written to ``benchmarks/results/parity_mixco.json``.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from benchmarks.harness import RESULTS, environment, write_json
from benchmarks.parity.parity_official import (
    TOLERANCE_FACTOR,
    Side,
    cifar10_batches,
    compare,
    parity_parser,
    train_side,
)

OUT = RESULTS / "parity_mixco.json"
OUR_MODEL = "mixco_resnet18"
OFFICIAL_ARCH = "resnet18"
OUT_DIM = 128
LAMBDA_SEED = 0
#: case -> the official scripts' loss settings (MoCo: ``exp_mix_res18_tinyimg.sh`` and ``args.py`` defaults, except
#: queue size and momentum, see ``MOCO_QUEUE``; SimCLR: ``resnet18_batch128_gpu2_mix.sh``) and the SGD settings
CASES = {
    "moco_mixco": dict(temperature=0.2, mix_temperature=0.05, mix_weight=1.0, lr=0.015, weight_decay=1e-4,
                       augmentation="moco_v2"),
    "simclr_mixco": dict(temperature=0.5, mix_temperature=0.5, mix_weight=1.0, lr=0.15, weight_decay=1e-6,
                         augmentation="simclr"),
}
#: a queue of 4096 (not 65536) keeps the initial random keys from dwarfing the 10 steps' keys; momentum 0.99 (not
#: 0.999) lets the key encoder move enough in 10 steps for its comparison to mean something
MOCO_QUEUE, MOCO_MOMENTUM = 4096, 0.99
OFFICIAL_TOP_LEVEL = ("models", "utils", "loss", "data_aug", "data_utils", "pretrain")


# ------------------------------------------------------------------------------------- the official code
@contextlib.contextmanager
def _importing_from(folder: Path) -> Iterator[None]:
    """Import from ``folder`` (a sub-project of the checkout, whose packages have generic top-level names such as
    ``models`` and ``utils``), then take those names out of ``sys.modules`` so the other sub-project can load its
    own; the imported objects keep working."""
    def ours() -> list[str]:
        return [name for name in sys.modules if name.split(".")[0] in OFFICIAL_TOP_LEVEL]

    saved = {name: sys.modules.pop(name) for name in ours()}
    stub_cv2 = importlib.util.find_spec("cv2") is None and "cv2" not in sys.modules
    if stub_cv2:
        sys.modules["cv2"] = types.ModuleType("cv2")  # only simclr's blur augmentation calls it; never run here
    sys.path.insert(0, str(folder))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # simclr/pretrain.py prints an apex notice on import
            yield
    finally:
        sys.path.remove(str(folder))
        for name in ours():
            del sys.modules[name]
        sys.modules.update(saved)
        if stub_cv2:
            del sys.modules["cv2"]


def load_official(checkout: Path) -> types.SimpleNamespace:
    """The official MoCo ``Encoder``, ``MixcoLoss`` and SimCLR ``ResNetSimCLR``, ``NTXentLoss``, ``_step``,
    ``_mix_step`` (with the modules whose ``np`` draws λ) imported from an official checkout."""
    needed = ["moco/models/encoder.py", "moco/utils/loss_fn.py", "simclr/pretrain.py", "simclr/models/resnet_simclr.py",
              "simclr/loss/nt_xent.py"]
    if not all((checkout / path).is_file() for path in needed):
        raise SystemExit(f"{checkout} is not a checkout of Lee-Gihun/MixCo-Mixup-Contrast (expected {', '.join(needed)})")
    with _importing_from(checkout / "moco"):
        encoder_module = importlib.import_module("models.encoder")
        loss_module = importlib.import_module("utils.loss_fn")
    with _importing_from(checkout / "simclr"):
        simclr_module = importlib.import_module("pretrain")
        resnet_module = importlib.import_module("models.resnet_simclr")
        nt_xent_module = importlib.import_module("loss.nt_xent")
    return types.SimpleNamespace(Encoder=encoder_module.Encoder, MixcoLoss=loss_module.MixcoLoss,
                                 encoder_module=encoder_module, ResNetSimCLR=resnet_module.ResNetSimCLR,
                                 NTXentLoss=nt_xent_module.NTXentLoss, simclr_module=simclr_module)


class LambdaFeed:
    """Stands in for ``np.random.uniform(0, 1, size=(N/2, 1, 1, 1))`` in the official code: hands out, in order,
    the λ our method draws from ``torch.Generator().manual_seed(seed)`` (``mix_pairs``' ``torch.rand`` replayed)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.random = self  # so that ``feed.random.uniform`` reads like ``np.random.uniform``

    def uniform(self, low: float, high: float, size: tuple[int, ...]) -> np.ndarray:
        if (low, high) != (0, 1) or len(size) != 4 or size[1:] != (1, 1, 1):
            raise ValueError(f"the official code drew λ as uniform({low}, {high}, size={size}); the feed expects "
                             "uniform(0, 1, size=(N/2, 1, 1, 1))")
        lam = torch.rand(size[0], generator=self.generator, dtype=torch.float32)
        return lam.double().numpy().reshape(size)


@contextlib.contextmanager
def _patched(target: object, name: str, value: object) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


def _quietly(build: Callable, *args, **kwargs):
    """``build(*args, **kwargs)`` without its prints and warnings (``ResNetSimCLR`` prints its backbone's name and
    builds torchvision ResNets with the deprecated ``pretrained=False``)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(*args, **kwargs)


def _cuda_noop(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return self


def official_moco_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official MoCo ``Encoder`` state dict (torchvision ResNet with ``fc = Sequential(Linear, ReLU, Linear)``,
    queue ``[D, K]``) under this package's ``MoCoMixCo`` names (``projector.model.*`` keeps torchvision's layer names;
    queue ``[K, D]``)."""
    out = {}
    for key, value in state.items():
        if key in ("queue", "queue_ptr"):
            out[key] = value.T.contiguous() if key == "queue" else value.reshape(())
            continue
        match = re.fullmatch(r"encoder_([qk])\.(.+)", key)
        if match is None:
            raise ValueError(f"unexpected official MoCo tensor {key!r}")
        side = "projector" if match.group(1) == "q" else "key_projector"
        name = re.sub(r"^fc\.0\.", "head.fc1.", re.sub(r"^fc\.2\.", "head.fc2.", match.group(2)))
        out[f"{side}.{name if name.startswith('head.') else 'model.' + name}"] = value
    return {k: v.detach().clone() for k, v in out.items()}


def official_simclr_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official ``ResNetSimCLR`` state dict (``features`` = torchvision ResNet children without ``fc``; head
    ``l1``, ``l2``) under this package's ``SimCLRMixCo`` names."""
    children = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    out = {}
    for key, value in state.items():
        if match := re.fullmatch(r"features\.(\d+)\.(.+)", key):
            out[f"projector.model.{children[match.group(1)]}.{match.group(2)}"] = value
        elif match := re.fullmatch(r"l([12])\.(weight|bias)", key):
            out[f"projector.head.fc{match.group(1)}.{match.group(2)}"] = value
        else:
            raise ValueError(f"unexpected official SimCLR tensor {key!r}")
    return {k: v.detach().clone() for k, v in out.items()}


def group_of(name: str) -> str:
    """The judged groups: query encoder and head, key encoder and head, queue."""
    top = name.split(".")[0]
    return {"projector": "query encoder", "key_projector": "key encoder", "queue_ptr": "queue"}.get(top, top)


def official_moco_side(official, initial: dict, settings: dict, float64_loss: bool = False,
                       lambda_seed: int = LAMBDA_SEED) -> Side:
    import torchvision

    encoder = official.Encoder(torchvision.models.__dict__[OFFICIAL_ARCH], "mixco", dim=OUT_DIM, K=MOCO_QUEUE,
                               m=MOCO_MOMENTUM, T=settings["temperature"], mix_T=settings["mix_temperature"], mlp=True,
                               single_gpu=True)
    encoder.load_state_dict(initial)
    criterion = official.MixcoLoss(settings["mix_weight"])
    feed = LambdaFeed(lambda_seed)

    def loss(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with _patched(torch.Tensor, "cuda", _cuda_noop), _patched(official.encoder_module, "np", feed):
            outputs = encoder(im_q=views[:, 0], im_k=views[:, 1])
        if float64_loss:
            return criterion(tuple(t.double() if t.is_floating_point() else t for t in outputs)).float()
        return criterion(outputs)

    def weights() -> dict[str, torch.Tensor]:
        # the key encoder as the official's next forward finds it after its momentum update
        # (``_momentum_update_key_encoder``, same arithmetic): the point ours reaches in ``after_optimizer_step``
        state = dict(encoder.state_dict())
        queries = dict(encoder.encoder_q.named_parameters())
        for name, key_param in encoder.encoder_k.named_parameters():
            state[f"encoder_k.{name}"] = key_param.data * encoder.m + queries[name].data * (1.0 - encoder.m)
        return official_moco_to_ours(state)

    return Side(encoder, loss, weights)


def official_simclr_side(official, initial: dict, settings: dict, batch_size: int, float64_loss: bool = False,
                         lambda_seed: int = LAMBDA_SEED) -> Side:
    model = _quietly(official.ResNetSimCLR, base_model=OFFICIAL_ARCH, out_dim=OUT_DIM)
    model.load_state_dict(initial)
    criterion = official.NTXentLoss("cpu", batch_size, settings["temperature"], True)
    args = types.SimpleNamespace(mix_temperature=settings["mix_temperature"])
    feed = LambdaFeed(lambda_seed)

    def float64_projections(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        representation, projection = model(x)
        return representation, projection.double()  # every later operation (the loss) in float64

    forward = float64_projections if float64_loss else model

    def loss(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        xis, xjs = views[:, 0], views[:, 1]
        with _patched(official.simclr_module, "np", feed):
            zis, zjs, base, _ = official.simclr_module._step(forward, xis, xjs, criterion)
            total = official.simclr_module._mix_step(forward, xis, xjs, zis, zjs, base, args)
        return total.float()

    return Side(model, loss, lambda: official_simclr_to_ours(model.state_dict()))


# ------------------------------------------------------------------------------------- ours
@contextlib.contextmanager
def _lambda_shifted(module: types.ModuleType, shift: float) -> Iterator[None]:
    """A planted mistake: ``module.mix_pairs`` mixes with ``λ + shift`` and returns it (the same random draw)."""
    original = module.mix_pairs

    def mix_pairs(images: torch.Tensor, generator: torch.Generator | None = None):
        mixed, lam = original(images, generator)
        half = images.shape[0] // 2
        weight = torch.full_like(lam, shift).view(-1, *([1] * (images.dim() - 1)))
        return mixed + weight * (images[:half] - images[half:]), lam + shift  # (λ+s) x_i + (1-λ-s) x_{i+N/2}

    with _patched(module, "mix_pairs", mix_pairs):
        yield


class _Float64Inputs(nn.Module):
    """``criterion`` computed on float64 embeddings, its result back in float32."""

    def __init__(self, criterion: nn.Module) -> None:
        super().__init__()
        self.criterion = criterion

    def forward(self, q_mix: torch.Tensor, keys: torch.Tensor, *rest: torch.Tensor | None) -> torch.Tensor:
        return self.criterion(q_mix.double(), keys.double(), *rest).float()


def our_side(method_name: str, initial: dict, settings: dict, model_name: str = OUR_MODEL, key_bn: str = "none",
             mix_temperature_offset: float = 0.0, lambda_shift: float = 0.0, lambda_seed: int = LAMBDA_SEED,
             float64_mix: bool = False) -> Side:
    """Ours: ``timm.create_model(model_name)`` + ``build_method(method_name)`` loaded with ``initial``.

    ``mix_temperature_offset`` and ``lambda_shift`` plant mistakes; ``float64_mix`` computes the mix term in
    float64 (the tests' stand-in for a float64 yardstick).
    """
    import timm

    import timm_selfcon  # noqa: F401
    from timm_selfcon.methods import build_method, moco, simclr

    model = timm.create_model(model_name, num_classes=0, **({} if model_name.startswith("mixco_") else
                                                            dict(exit_stages=[])))
    options = dict(out_dim=OUT_DIM, temperature=settings["temperature"], gather=False,
                   mix_temperature=settings["mix_temperature"] + mix_temperature_offset,
                   mix_weight=settings["mix_weight"], generator=torch.Generator().manual_seed(lambda_seed))
    if method_name == "moco_mixco":
        options.update(queue_size=initial["queue"].shape[0], momentum=MOCO_MOMENTUM, key_bn=key_bn)
    method = build_method(method_name, model, **options)
    method.load_state_dict(initial)
    if float64_mix:
        method.mix_criterion = _Float64Inputs(method.mix_criterion)
    module = moco if method_name == "moco_mixco" else simclr

    def loss(views: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with _lambda_shifted(module, lambda_shift) if lambda_shift else contextlib.nullcontext():
            return method(views)[0]

    return Side(method, loss, lambda: {k: v.detach().clone() for k, v in method.state_dict().items()},
                after_step=method.after_optimizer_step)


# ------------------------------------------------------------------------------------- the cases
def initial_state(official, case: str, batch_size: int) -> dict[str, torch.Tensor]:
    """The official model's initial state (seed 0): both sides start from it."""
    import torchvision

    torch.manual_seed(0)
    settings = CASES[case]
    if case == "moco_mixco":
        model = official.Encoder(torchvision.models.__dict__[OFFICIAL_ARCH], "mixco", dim=OUT_DIM, K=MOCO_QUEUE,
                                 m=MOCO_MOMENTUM, T=settings["temperature"], mix_T=settings["mix_temperature"],
                                 mlp=True, single_gpu=True)
    else:
        model = _quietly(official.ResNetSimCLR, base_model=OFFICIAL_ARCH, out_dim=OUT_DIM)
    return copy.deepcopy(model.state_dict())


def run_case(case: str, official, batches, mix_temperature_offset: float = 0.0, lambda_shift: float = 0.0) -> dict:
    settings = CASES[case]
    batch_size = batches[0][0].shape[0]
    initial = initial_state(official, case, batch_size)
    if case == "moco_mixco":
        def make_official(float64_loss: bool = False) -> Side:
            return official_moco_side(official, initial, settings, float64_loss)

        # ours starts with the key encoder the official's first forward uses: its first momentum update, from an
        # identical copy, changes it by rounding only, and those ulps would otherwise reach the queue
        ours_initial = make_official().weights()
    else:
        ours_initial = official_simclr_to_ours(initial)

        def make_official(float64_loss: bool = False) -> Side:
            return official_simclr_side(official, initial, settings, batch_size, float64_loss)

    result = compare(make_official,
                     lambda: our_side(case, ours_initial, settings, mix_temperature_offset=mix_temperature_offset,
                                      lambda_shift=lambda_shift),
                     lambda: make_official(float64_loss=True), batches, lr=settings["lr"],
                     weight_decay=settings["weight_decay"], group_of=group_of)
    if case == "moco_mixco":
        result["split_bn_effect"] = split_bn_effect(make_official, ours_initial, settings, batches)
    return dict(case=case, official_arch=OFFICIAL_ARCH, our_model=OUR_MODEL, **{k: v for k, v in settings.items()},
                **(dict(queue_size=MOCO_QUEUE, momentum=MOCO_MOMENTUM, key_bn="none") if case == "moco_mixco" else {}),
                **result)


def split_bn_effect(make_official: Callable[[], Side], ours_initial: dict, settings: dict, batches) -> dict:
    """How far our one-process default, ``key_bn="split"`` (2 chunks), moves MoCo v2 + MixCo from the official
    single-GPU code on the same batches: per-step loss differences and final weight differences per group."""
    official = make_official()
    ours = our_side("moco_mixco", ours_initial, settings, key_bn="split")
    official_losses, our_losses = (train_side(s, batches, settings["lr"], settings["weight_decay"])
                                   for s in (official, ours))
    final_official, final_ours = official.weights(), ours.weights()
    groups = {}
    for group in dict.fromkeys(group_of(name) for name in final_official):
        pick = [k for k in final_official if group_of(k) == group and final_official[k].is_floating_point()]
        groups[group] = max(float((final_official[k].double() - final_ours[k].double()).abs().max()) for k in pick)
    loss_diff = [abs(a - b) for a, b in zip(our_losses, official_losses, strict=True)]
    return dict(key_bn="split", num_splits=2, ours_losses=our_losses, loss_difference=loss_diff,
                first_step_loss_difference=loss_diff[0], first_step_relative_loss_difference=loss_diff[0]
                / abs(official_losses[0]), max_loss_difference=max(loss_diff), final_weight_difference=groups)


def main(argv: list[str] | None = None) -> int:
    parser = parity_parser(__doc__, list(CASES))
    parser.add_argument("--plant-mix-temperature-offset", type=float, default=0.0,
                        help="run ours with mix temperature + this offset: a planted difference the check must flag")
    parser.add_argument("--plant-lambda-shift", type=float, default=0.0,
                        help="run ours with λ + this shift: a planted difference the check must flag")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.batch_size < 2 or args.batch_size % 2 or MOCO_QUEUE % args.batch_size:
        parser.error(f"--batch-size must be even and divide the queue size {MOCO_QUEUE}, got {args.batch_size}")
    if not (args.data / "train.parquet").is_file():
        parser.error(f"--data {str(args.data)!r} holds no train.parquet")
    official = load_official(args.official_checkout.resolve())
    torch.set_num_threads(1)
    results = []
    for case in args.cases:
        batches = cifar10_batches(args.data, 2, args.batch_size, args.steps, augmentation=CASES[case]["augmentation"])
        result = run_case(case, official, batches, args.plant_mix_temperature_offset, args.plant_lambda_shift)
        results.append(result)
        groups = "; ".join(f"{name} {g['final_weight_difference']:.1e} (noise {g['noise_final_weight_difference']:.1e})"
                           for name, g in result["groups"].items())
        print(f"{case:13s} {'PASS' if result['passed'] else 'FAIL'}  max |loss diff| {result['max_loss_difference']:.2e}"
              f" (official's own float64 noise {result['max_noise_loss_difference']:.2e});  final max |weight diff|: "
              f"{groups}", flush=True)
        if "split_bn_effect" in result:
            effect = result["split_bn_effect"]
            print(f"{'':13s} ours with key_bn=split: step-1 loss differs by {effect['first_step_loss_difference']:.2e}"
                  f", max {effect['max_loss_difference']:.2e}", flush=True)
    write_json(args.output, dict(official_checkout=str(args.official_checkout), steps=args.steps,
                                 batch_size=args.batch_size, image_size=32, tolerance_factor=TOLERANCE_FACTOR,
                                 planted_mix_temperature_offset=args.plant_mix_temperature_offset,
                                 planted_lambda_shift=args.plant_lambda_shift,
                                 **environment("torch", "threads"), cases=results))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
