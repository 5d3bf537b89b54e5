"""A model whose weights are a mix of a start model's and of fine-tuned copies of it (WiSE-FT).

    python -m wsi_assets.cli.average_weights --start v3.pt --finetuned a.pt b.pt \
        --alpha 0.35 --out v4.pt --version 4 [--data ../shared/data/nuclei_train]

Fine-tuning on a new dataset (CoNSeP) gains there but loses a point or two on the sets the start
model already did well on; moving only part of the way from the start weights towards the mean
of the fine-tuned ones keeps most of the gain and little of the loss (Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022). The post-processing thresholds are the first
fine-tuned model's; the card records the mix.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wsi_assets.segmentation.model_files import read_model_card
from wsi_assets.training.network import UNet
from wsi_assets.training.train import export, load_trained_net

POSTPROCESSING_KEYS = ("fg_threshold", "seed_threshold", "min_area")
CARRIED_OVER = ("colour_gate", "evaluation_command", "metrics_note", "postprocessing_tuned_on")


def averaged_net(start: Path, finetuned: list[Path], alpha: float) -> UNet:
    """(1 - alpha) × start + alpha × mean(finetuned), parameter by parameter; every file must share the start's widths."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha {alpha} is not between 0 (the start model) and 1 (the fine-tuned mean)")
    if not finetuned:
        raise ValueError("give at least one fine-tuned model to mix with the start model")
    base_card = read_model_card(start)
    base = load_trained_net(start, base_card)
    tuned = []
    for path in finetuned:
        card = read_model_card(path)
        if list(card.get("widths") or []) != list(base_card.get("widths") or []):
            raise ValueError(
                f"{Path(path).name} has widths {card.get('widths')}, {Path(start).name} {base_card.get('widths')}: only copies of one network can be averaged"
            )
        tuned.append(load_trained_net(path, card).state_dict())
    mixed = {}
    for name, value in base.state_dict().items():
        if value.is_floating_point():
            mean = torch.stack([state[name] for state in tuned]).mean(0)
            mixed[name] = (1 - alpha) * value + alpha * mean
        else:  # counters (batch-norm's batches seen): the fine-tuned value
            mixed[name] = tuned[0][name]
    base.load_state_dict(mixed)
    return base.eval()


def write_average(start: Path, finetuned: list[Path], alpha: float, out: Path, version: str, data: Path | None = None) -> dict:
    """Export the averaged model with a card that says what was mixed; returns the card.

    With `data` (a labelled folder with the held-out split), the card also holds the new model's
    held-out scores, per dataset, as `python benchmarks/evaluate_model.py` gives them."""
    net = averaged_net(start, finetuned, alpha)
    card = read_model_card(finetuned[0])
    start_card = read_model_card(start)
    card["version"] = version
    # What still holds of the start model's card: the colour gate's rule, how the model is scored
    # (its measured effects and scores were the start model's, so they are not carried).
    for key in CARRIED_OVER:
        if key in start_card:
            card.setdefault(key, start_card[key])
    if isinstance(card.get("colour_gate"), dict):
        card["colour_gate"] = {k: v for k, v in card["colour_gate"].items() if k != "effect"}
    history = list((start_card.get("training") or {}).get("history", []))
    if not history or str(history[-1].get("version")) != str(start_card.get("version")):
        history.append(
            {
                "version": start_card.get("version"),
                **{k: (start_card.get("training") or {}).get(k) for k in ("steps", "lr", "seed", "seconds")},
            }
        )
    card["training"]["history"] = history
    card["training"]["init"] = f"version {start_card.get('version')}"
    card["training"]["finetuned"] = [
        {
            "file": Path(p).name,
            **{
                k: (read_model_card(p).get("training") or {}).get(k) for k in ("steps", "lr", "seed", "seconds", "dataset_shares")
            },
        }
        for p in finetuned
    ]
    card["weight_average"] = {
        "start": f"version {start_card.get('version')}",
        "finetuned": [Path(p).name for p in finetuned],
        "alpha": alpha,
        "rule": "(1 - alpha) x start + alpha x mean(fine-tuned), every parameter",
    }
    post = {k: card["postprocessing"][k] for k in POSTPROCESSING_KEYS if k in card.get("postprocessing", {})}
    export(net, card, out, **post)
    if data is not None:
        card["held_out_scores"] = held_out_scores(out, data)
        export(net, card, out, **post)
    return card


def held_out_scores(model_file: Path, data: Path) -> dict:
    """F1@0.5, AJI and PQ per held-out dataset and over all of them, rounded to 3 places."""
    from wsi_assets.segmentation.torchscript import TorchScriptSegmenter
    from wsi_assets.training.accuracy_gate import held_out_summary
    from wsi_assets.training.evaluate import labelled_images

    summary = held_out_summary(TorchScriptSegmenter(model_file, device="cpu"), labelled_images(data))
    return {
        dataset: {
            k: (int(v) if k == "images" else round(float(v), 3)) for k, v in row.items() if k in ("images", "F1@0.5", "AJI", "PQ")
        }
        for dataset, row in summary.iterrows()
    }
