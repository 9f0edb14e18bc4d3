"""Step-for-step parity with the official SelfCon code (github.com/raymin0223/self-contrastive-learning).

``python -m benchmarks.parity.parity_official OFFICIAL_CHECKOUT [--steps 10] [--batch-size 64]``

The official ``ConResNet`` and ``ConLoss`` are imported from the checkout at run time (nothing of them is
copied into this project). For each case, both sides start from the same weights (the official model's initial
state dict, converted with :func:`timm_selfcon.hub.convert.convert_state_dict`) and take the same SGD steps
(momentum 0.9, wd 1e-4, lr 0.05) on identical real CIFAR-10 batches (SupCon's augmentation, fixed seed):

- ``official``: ConResNet + ConLoss, the loss built as ``main_represent._train`` builds it;
- ``ours``: ``timm.create_model("selfcon_resnet18_cifar", ...)`` + ``build_method(...)``;
- ``official_float64``: the official run again with only the loss computed in float64: the official code's own
  rounding noise, the yardstick for the differences.

Printed and written to ``benchmarks/results/parity_official.json``: per-step loss difference |ours - official|
and the final weights' largest absolute difference, each beside the same numbers for ``official_float64`` vs
``official``. A case passes when ours is within ``TOLERANCE_FACTOR`` x that noise (plus an absolute floor of
1e-6 for the loss), each step's loss against the largest noise seen up to that step: a real difference (a
temperature off by 1e-3 moves the loss by ~1e-2) fails.

Cases: SelfCon-S with the ``fc`` exit (the official CIFAR script) and with the ``same`` exit (the ImageNet
script's sub-network), and SupCon (two crops, no exit).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn as nn

from benchmarks.harness import RESULTS, ROOT, environment, write_json

OUT = RESULTS / "parity_official.json"
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10"
TOLERANCE_FACTOR = 10.0
LOSS_FLOOR = 1e-6
WEIGHT_FLOOR = 1e-7
CASES = {  # name -> (official selfcon_size or None for no exit, views)
    "selfcon_fc": ("fc", 1),
    "selfcon_same": ("same", 1),
    "supcon": (None, 2),
}


@dataclasses.dataclass
class Side:
    """One implementation: a trainable module, its loss on ``views [B, V, 3, H, W]`` and ``labels [B]``, and its
    weights named as this package names them (so two sides can be compared tensor by tensor)."""

    module: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weights: Callable[[], dict[str, torch.Tensor]]
    #: called as the engine calls ``after_optimizer_step``: ``(step, total_steps)`` after each optimizer step (1-based;
    #: MoCo's momentum update of the key encoder), if any
    after_step: Callable[[int, int], None] | None = None


def sgd_steps(side: Side, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float = 0.05,
              weight_decay: float = 1e-4) -> Iterator[float]:
    """Plain momentum SGD steps on ``batches``, one per iteration; yields the loss before each step."""
    optimizer = torch.optim.SGD(side.module.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    side.module.train()
    for step, (views, labels) in enumerate(batches, 1):
        loss = side.loss(views, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if side.after_step is not None:
            side.after_step(step, len(batches))
        yield float(loss.detach())


def train_side(side: Side, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float = 0.05,
               weight_decay: float = 1e-4) -> list[float]:
    """Plain momentum SGD steps on ``batches``; the loss before each step."""
    return list(sgd_steps(side, batches, lr, weight_decay))


def largest_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The largest absolute difference between same-named floating-point tensors, and that tensor's name."""
    if a.keys() != b.keys():
        raise ValueError(f"the sides name different tensors: {sorted(a.keys() ^ b.keys())[:5]}")
    return max((float((a[k].double() - b[k].double()).abs().max()), k) for k in a if a[k].is_floating_point())


def max_weight_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return largest_weight_difference(a, b)[0]


def within_noise(differences: list[float], noise: list[float], floor: float) -> bool:
    """Every step's difference within ``TOLERANCE_FACTOR`` x the largest noise seen up to that step (+ ``floor``):
    an early step, before rounding has grown, is held to its own small noise, not to the last step's."""
    return all(d <= TOLERANCE_FACTOR * n + floor for d, n in zip(differences, itertools.accumulate(noise, max),
                                                                   strict=True))


def compare(make_reference: Callable[[], Side], make_candidate: Callable[[], Side], make_noise: Callable[[], Side],
            batches: list[tuple[torch.Tensor, torch.Tensor]], *, lr: float = 0.05, weight_decay: float = 1e-4,
            group_of: Callable[[str], str] | None = None) -> dict:
    """Train the three sides in lockstep on ``batches`` and judge the candidate against the reference's own noise.

    The losses are judged step by step (:func:`within_noise`), the final weights against the final noise.
    ``group_of`` (tensor name -> group, e.g. query encoder / key encoder / queue) also judges each group's weights
    after every step against that group's noise (:func:`within_noise`), so a group that moves little (a momentum
    encoder) is not hidden by one that moves a lot; ``groups`` then holds the per-group numbers and every group
    must pass.
    """
    reference, candidate, noise = make_reference(), make_candidate(), make_noise()
    start = max_weight_difference(reference.weights(), candidate.weights())
    steps = [sgd_steps(side, batches, lr, weight_decay) for side in (reference, candidate, noise)]
    ref_losses, cand_losses, noise_losses = [], [], []
    per_group: dict[str, dict[str, list[float]]] = {}
    for _ in batches:
        for losses, side_steps in zip((ref_losses, cand_losses, noise_losses), steps, strict=True):
            losses.append(next(side_steps))
        if group_of is not None:
            states = [side.weights() for side in (reference, candidate, noise)]
            for group in dict.fromkeys(group_of(name) for name in states[0]):
                ref, cand, noisy = ({k: v for k, v in state.items() if group_of(k) == group} for state in states)
                entry = per_group.setdefault(group, {"ours": [], "noise": []})
                difference, entry["largest_in"] = largest_weight_difference(ref, cand)
                entry["ours"].append(difference)
                entry["noise"].append(max_weight_difference(ref, noisy))
    loss_diff = [abs(a - b) for a, b in zip(cand_losses, ref_losses, strict=True)]
    noise_loss_diff = [abs(a - b) for a, b in zip(noise_losses, ref_losses, strict=True)]
    final_ref = reference.weights()
    weight_diff = max_weight_difference(final_ref, candidate.weights())
    noise_weight_diff = max_weight_difference(final_ref, noise.weights())
    loss_ok = within_noise(loss_diff, noise_loss_diff, LOSS_FLOOR)
    weight_ok = weight_diff <= TOLERANCE_FACTOR * noise_weight_diff + WEIGHT_FLOOR
    groups = {group: dict(weight_difference=entry["ours"], noise_weight_difference=entry["noise"],
                          final_weight_difference=entry["ours"][-1], noise_final_weight_difference=entry["noise"][-1],
                          final_largest_in=entry["largest_in"],
                          passed=within_noise(entry["ours"], entry["noise"], WEIGHT_FLOOR))
              for group, entry in per_group.items()}
    weight_ok = weight_ok and all(g["passed"] for g in groups.values())
    return dict(steps=len(batches), initial_weight_difference=start, official_losses=ref_losses,
                ours_losses=cand_losses, loss_difference=loss_diff, noise_loss_difference=noise_loss_diff,
                max_loss_difference=max(loss_diff), max_noise_loss_difference=max(noise_loss_diff),
                final_weight_difference=weight_diff, noise_final_weight_difference=noise_weight_diff,
                **({"groups": groups} if groups else {}),
                tolerance_factor=TOLERANCE_FACTOR, passed=bool(start == 0.0 and loss_ok and weight_ok))


# ------------------------------------------------------------------------------------- the two codes
def load_official(checkout: Path):
    """``(ConResNet, ConLoss)`` imported from an official checkout (its ``networks/`` and ``losses/``)."""
    if not (checkout / "networks" / "resnet_big.py").is_file() or not (checkout / "losses" / "losses.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of raymin0223/self-contrastive-learning "
                         "(expected networks/resnet_big.py and losses/losses.py)")
    sys.path.insert(0, str(checkout))
    return importlib.import_module("networks.resnet_big").ConResNet, importlib.import_module("losses.losses").ConLoss


def official_side(ConResNet, ConLoss, initial: dict, size: str | None, views: int, temperature: float,
                  float64_loss: bool = False) -> Side:
    positions = [False, True, False] if size else [False, False, False]
    model = ConResNet("resnet18", selfcon_pos=positions, selfcon_size=size or "same", dataset="cifar10")
    model.load_state_dict(initial)
    criterion = ConLoss(temperature=temperature)

    def loss(batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # the features as main_represent._train stacks them: exits in depth order, backbone last; crops on dim 1
        if views == 2:
            _, projected = model(torch.cat([batch[:, 0], batch[:, 1]]))
            features = torch.stack(projected.split(batch.shape[0]), dim=1)
        else:
            exits, backbone = model(batch[:, 0])
            features = torch.stack([*exits, backbone], dim=1)
        if float64_loss:
            return criterion(features.double(), labels).float()
        return criterion(features, labels)

    return Side(model, loss, lambda: to_our_names(model.state_dict(), size))


def to_our_names(official_state: dict[str, torch.Tensor], size: str | None) -> dict[str, torch.Tensor]:
    """An official ConResNet state dict under this package's names (the converter of ``convert-official``)."""
    from timm_selfcon.hub.convert import convert_state_dict

    return convert_state_dict(dict(official_state), [1] if size else [], size or "same", is_resnet=True,
                              multi_head=bool(size))


def our_side(initial: dict, size: str | None, temperature: float) -> Side:
    import timm

    import timm_selfcon  # noqa: F401
    from timm_selfcon.methods import build_method

    exits = dict(exit_stages=[2], sub_network=size) if size else dict(exit_stages=[])
    model = timm.create_model("selfcon_resnet18_cifar", num_classes=0, **exits)
    method = build_method("selfcon" if size else "supcon", model, temperature=temperature, base_temperature=0.07,
                          gather=False)
    method.load_state_dict(initial)
    return Side(method, lambda batch, labels: method(batch, labels)[0],
                lambda: {k: v.detach().clone() for k, v in method.state_dict().items()})


def cifar10_batches(data: Path, views: int, batch_size: int, steps: int, seed: int = 0, augmentation: str = "supcon"):
    """``steps`` batches of real CIFAR-10 train images through ``augmentation`` (SupCon's by default; seeded):
    ``[B, V, 3, 32, 32]``."""
    import datasets

    from timm_selfcon.data import NORMALIZATION, build_transform
    from timm_selfcon.data.datasets import isolated_rng

    table = datasets.load_dataset("parquet", data_files=str(data / "train.parquet"), split="train")
    rows = table.select(range(batch_size * steps))
    transform = build_transform(augmentation, 32, *NORMALIZATION["cifar10"], views=views)
    image_column = "img" if "img" in rows.column_names else "image"
    images, labels = [], []
    with isolated_rng(seed):
        for row in rows:
            images.append(transform(row[image_column].convert("RGB")))
            labels.append(row["label"])
    images, labels = torch.stack(images), torch.tensor(labels)
    return list(zip(images.split(batch_size), labels.split(batch_size), strict=True))


def run_case(name: str, ConResNet, ConLoss, batches, temperature: float = 0.1,
             our_temperature: float | None = None) -> dict:
    size, views = CASES[name]
    torch.manual_seed(0)
    positions = [False, True, False] if size else [False, False, False]
    initial_official = copy.deepcopy(ConResNet("resnet18", selfcon_pos=positions, selfcon_size=size or "same",
                                               dataset="cifar10").state_dict())
    initial_ours = to_our_names(initial_official, size)
    result = compare(
        lambda: official_side(ConResNet, ConLoss, initial_official, size, views, temperature),
        lambda: our_side(initial_ours, size, our_temperature or temperature),
        lambda: official_side(ConResNet, ConLoss, initial_official, size, views, temperature, float64_loss=True),
        batches)
    return dict(case=name, sub_network=size, views=views, temperature=temperature, **result)


def parity_parser(description: str, cases: list[str]) -> argparse.ArgumentParser:
    """The options every parity benchmark takes: the official checkout, the data, steps, batch size and cases."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("official_checkout", type=Path)
    parser.add_argument("--data", type=Path, default=SHARED_CIFAR10, help="folder with CIFAR-10 train.parquet")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cases", nargs="+", default=cases, choices=cases)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = parity_parser(__doc__, list(CASES))
    parser.add_argument("--plant-temperature-offset", type=float, default=0.0,
                        help="run ours with temperature + this offset: a planted difference the check must flag")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    ConResNet, ConLoss = load_official(args.official_checkout.resolve())
    if not (args.data / "train.parquet").is_file():
        parser.error(f"--data {str(args.data)!r} holds no train.parquet")
    results = []
    for name in args.cases:
        batches = cifar10_batches(args.data, CASES[name][1], args.batch_size, args.steps)
        result = run_case(name, ConResNet, ConLoss, batches, our_temperature=0.1 + args.plant_temperature_offset)
        results.append(result)
        print(f"{name:13s} {'PASS' if result['passed'] else 'FAIL'}  max |loss diff| {result['max_loss_difference']:.2e}"
              f" (official's own float64 noise {result['max_noise_loss_difference']:.2e});  final max |weight diff| "
              f"{result['final_weight_difference']:.2e} (noise {result['noise_final_weight_difference']:.2e})",
              flush=True)
    write_json(args.output, dict(official_checkout=str(args.official_checkout), steps=args.steps,
                                 batch_size=args.batch_size, lr=0.05,
                                 planted_temperature_offset=args.plant_temperature_offset,
                                 **environment("torch", "threads"), cases=results))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
