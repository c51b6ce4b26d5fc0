"""A transformers HuBERT / wav2vec 2.0 snapshot as a fairseq HuBERT checkpoint (``fesa import-hf``).

The snapshot's config.json is read as json and its weights with safetensors (or ``torch.load(weights_only=True)``
for a pytorch_model.bin): nothing in it runs. The encoder becomes a stock fairseq ``hubert`` model of the
``hubert_pretraining`` task, as official releases are, so that every command and stock fairseq tool takes it. A
snapshot has no pretraining head (label embeddings, final projection): the checkpoint records an empty label
dictionary, so a warm start gives them new ones, as for a release whose labels differ. Before anything is written,
transformers runs the snapshot and fairseq the converted model on the same noise: every layer must agree.
"""

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from fesa.errors import FesaError
from fesa.files import atomic_write_with, check_output_file, read_json
from fesa.huggingface.config import fairseq_model_settings, least_weights, read_settings, receptive_field
from fesa.huggingface.weights import PRETRAINING_HEAD, to_fairseq
from fesa_fairseq.checkpoints import UNREADABLE

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4  # max |difference| of any layer's output, fairseq vs transformers
CHECK_SAMPLES = 32000  # two seconds of noise


def read_object(path: Path) -> Dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise FesaError(f"{path} is not a JSON object: the snapshot is damaged")
    return data


def read_weights(folder: Path) -> Dict[str, torch.Tensor]:
    """model.safetensors (one file or shards with their index), else pytorch_model.bin read weights only; every
    tensor finite (a NaN would pass the layer check: NaN > tolerance is false)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weights: Dict[str, torch.Tensor] = {}
        for shard in shard_names(index):
            for name, tensor in read_safetensors(folder / shard).items():
                if name in weights:
                    raise FesaError(f"{index}: the tensor {name} is in two shards ({shard} and another): the snapshot is damaged")
                weights[name] = tensor
        return weights
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    bin_file = folder / "pytorch_model.bin"
    if not bin_file.is_file():
        raise FesaError(f"{folder} holds no model.safetensors, model.safetensors.index.json or pytorch_model.bin: not a transformers snapshot")
    try:
        weights = torch.load(str(bin_file), map_location="cpu", weights_only=True)
    except UNREADABLE as e:
        raise FesaError(f"cannot read {bin_file} as plain tensors ({type(e).__name__}): convert it to safetensors where it was made") from e
    if not (isinstance(weights, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())):
        what = "a dict not all of name -> tensor" if isinstance(weights, dict) else f"a {type(weights).__name__}"
        raise FesaError(f"{bin_file} holds {what}, not a state dict of named tensors: not a transformers snapshot's weights")
    return check_finite(weights, bin_file)


def shard_names(index: Path) -> List[str]:
    """The shard files an index names: plain file names beside it (never a path elsewhere, such as /etc/passwd)."""
    weight_map = read_object(index).get("weight_map")
    if not (isinstance(weight_map, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())):
        raise FesaError(f"{index}: weight_map is not an object of tensor name -> shard file name: the index is damaged")
    for name, shard in weight_map.items():
        if shard in ("", ".", "..") or Path(shard).name != shard or "/" in shard or "\\" in shard:
            raise FesaError(f"{index}: weight_map[{name!r}] = {shard!r} is not a file name inside the snapshot: refusing to read it")
    return sorted(set(weight_map.values()))


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FesaError(f"{path} is missing (model.safetensors.index.json names it): download the whole snapshot")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise FesaError(f"cannot read {path}: not a safetensors file, or damaged ({e})") from e
    return check_finite(weights, path)


def check_finite(weights: Dict[str, torch.Tensor], path: Path) -> Dict[str, torch.Tensor]:
    for name, tensor in weights.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise FesaError(f"{path}: the tensor {name} holds NaN or infinite values: the snapshot is damaged, so nothing was written")
    return weights


def encoder_tensors(weights: Dict[str, torch.Tensor], model_type: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The encoder's tensors without the model prefix (hubert., wav2vec2.) and the heads' names (left out)."""
    prefix = f"{model_type}."
    if not any(k.startswith(prefix) for k in weights):
        return dict(weights), []
    encoder = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    return encoder, sorted(k for k in weights if not k.startswith(prefix))


def read_snapshot(folder: Path) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor], List[str], bool]:
    """(settings, encoder tensors, heads left out, waveform normalisation) of a snapshot folder."""
    if not folder.is_dir():
        raise FesaError(f"{folder} is not a folder: give a transformers snapshot folder (config.json and the weights)")
    if not (folder / "config.json").is_file():
        raise FesaError(f"{folder} has no config.json: not a transformers snapshot")
    settings = read_settings(read_json(folder / "config.json"), str(folder / "config.json"))  # before the weights are read
    field = receptive_field(settings["conv_kernel"], settings["conv_stride"])
    if field > CHECK_SAMPLES:
        raise FesaError(
            f"{folder}/config.json: conv_kernel and conv_stride see {field} samples a frame, "
            f"more than the {CHECK_SAMPLES} of the check: not a speech encoder, so nothing was written"
        )
    preprocessor = folder / "preprocessor_config.json"
    normalize = settings["feat_extract_norm"] == "layer"
    if preprocessor.is_file():
        normalize = read_object(preprocessor).get("do_normalize", False)
        if not isinstance(normalize, bool):
            raise FesaError(f"{preprocessor}: do_normalize={normalize!r} is not true or false: the snapshot is damaged")
    encoder, heads = encoder_tensors(read_weights(folder), settings["model_type"])
    held, needed = sum(t.numel() for t in encoder.values()), least_weights(settings)
    if needed > held:  # before a model of the config's sizes is built: a damaged config could ask for terabytes
        raise FesaError(f"{folder}/config.json describes a model of at least {needed} weights, its tensors hold {held}: damaged, or another kind")
    return settings, encoder, heads, normalize


def fairseq_config(settings: Dict[str, Any], normalize: bool) -> Dict[str, Any]:
    """A complete fairseq training config, as a trainer saves it: stock defaults, hubert model, hubert_pretraining task."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models.hubert.hubert import HubertConfig
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(FairseqConfig())
    cfg.model = OmegaConf.structured(HubertConfig(**settings))
    cfg.model._name = "hubert"
    task = HubertPretrainingConfig(data=".", labels=["km"], label_rate=settings["label_rate"], normalize=normalize)
    cfg.task = OmegaConf.structured(task)
    cfg.task._name = "hubert_pretraining"
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def build_fairseq_hubert(cfg: Dict[str, Any], encoder: Dict[str, torch.Tensor], path: str):
    """fairseq's HubertModel of ``cfg`` holding the snapshot's tensors; its pretraining head starts afresh."""
    from fairseq.data import Dictionary
    from fairseq.models.hubert.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.merge(OmegaConf.structured(HubertConfig), cfg["model"])
    task_cfg = OmegaConf.merge(OmegaConf.structured(HubertPretrainingConfig), cfg["task"])
    model = HubertModel(model_cfg, task_cfg, [Dictionary()])
    weights, unknown = to_fairseq({k: v.float() for k, v in encoder.items()}, cfg["model"]["extractor_mode"])
    if model.post_extract_proj is None:
        drop_identity_projection(weights, path)
    own = model.state_dict()
    fresh = [n for n in own if n not in weights and (n in PRETRAINING_HEAD or n == "mask_emb")]
    missing = [n for n in own if n not in weights and n not in fresh]
    wrong = [f"{n} {tuple(weights[n].shape)} (fairseq: {tuple(own[n].shape)})" for n in own if n in weights and weights[n].shape != own[n].shape]
    if unknown or missing or wrong:
        problems = [f"not in fairseq's HuBERT: {', '.join(unknown[:5])}"] * bool(unknown)
        problems += [f"missing: {', '.join(missing[:5])}"] * bool(missing) + [f"other shapes: {', '.join(wrong[:5])}"] * bool(wrong)
        raise FesaError(f"{path}: its tensors do not fit the model its config.json describes ({'; '.join(problems)}): damaged, or another kind")
    model.load_state_dict({**{n: own[n] for n in fresh}, **weights}, strict=True)
    if "mask_emb" in fresh:
        logger.info("the snapshot has no masked_spec_embed (it never masked): mask_emb starts afresh, as the pretraining head does")
    return model.eval()


def drop_identity_projection(weights: Dict[str, torch.Tensor], path: str) -> None:
    """fairseq's HuBERT has no feature projection when the conv and encoder widths agree; transformers always has
    one. An identity (what fesa export --hf writes for such a model) is dropped; anything else cannot be held."""
    w, b = weights.pop("post_extract_proj.weight", None), weights.pop("post_extract_proj.bias", None)
    if w is None:
        return
    if not (torch.equal(w, torch.eye(w.shape[0], w.shape[1])) and (b is None or not b.any())):
        raise FesaError(
            f"{path}: hidden_size={w.shape[0]} equals the last conv_dim, and fairseq's HuBERT then has no feature projection, "
            "but this snapshot's is not the identity: fairseq's HuBERT cannot hold this model, so nothing was written"
        )


def transformers_load_errors() -> Tuple[type, ...]:
    """What transformers raises on a config or weights it cannot build a model of."""
    errors: Tuple[type, ...] = (OSError, ValueError, TypeError, KeyError, RuntimeError)
    try:
        from huggingface_hub.errors import StrictDataclassError  # transformers 5 checks each config field's type
    except ImportError:
        return errors
    return errors + (StrictDataclassError,)


def layer_differences(folder: Path, model, normalize: bool, seed: int = 0) -> List[float]:
    """Max |difference| per layer (input embedding excluded; the last entry is the final output), transformers'
    own model of the snapshot against the converted fairseq model, on the same noise."""
    from transformers import AutoModel

    try:
        hf = AutoModel.from_pretrained(str(folder), attn_implementation="eager").float().eval()
    except transformers_load_errors() as e:
        detail = (str(e).splitlines() or [""])[0]
        raise FesaError(f"{folder}: transformers cannot load this snapshot ({type(e).__name__}: {detail}): nothing was written") from e
    x = 0.1 * torch.randn(1, CHECK_SAMPLES, generator=torch.Generator().manual_seed(seed))
    if normalize:
        x = torch.nn.functional.layer_norm(x, x.shape)
    with torch.no_grad():
        out = hf(x, output_hidden_states=True)
        ours = [model.extract_features(x, output_layer=i)[0] for i in range(1, len(out.hidden_states))] + [model.extract_features(x)[0]]
    theirs = list(out.hidden_states[1:]) + [out.last_hidden_state]
    return [float((a - b).abs().max()) for a, b in zip(ours, theirs)]


def import_snapshot(folder: Path, out: Path, overwrite: bool = False, seed: int = 0) -> Dict[str, Any]:
    """Write OUT (a fairseq checkpoint) from the snapshot in ``folder`` once its layers agree; return what was done."""
    from fairseq.data import Dictionary

    check_output_file(out, overwrite, inputs=[folder])  # before anything is read: never over or inside the snapshot
    settings, encoder, heads, normalize = read_snapshot(folder)
    cfg = fairseq_config(fairseq_model_settings(settings), normalize)
    model = build_fairseq_hubert(cfg, encoder, str(folder))
    differences = layer_differences(folder, model, normalize, seed)
    if not all(math.isfinite(d) for d in differences):
        raise FesaError(f"{folder}: a layer's output is NaN or infinite on noise (transformers' or the converted model's): nothing was written")
    worst = max(differences)
    if worst > TOLERANCE:
        raise FesaError(f"{folder}: the converted layers differ from transformers' by up to {worst:.2g} (> {TOLERANCE:g}): nothing was written")
    state = {
        "args": None,
        "cfg": cfg,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "none", "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": {"dictionaries": [Dictionary()]},
        "extra_state": {"imported_from": {"folder": folder.name, "architectures": settings["architectures"], "heads_left_out": heads}},
        "last_optimizer_state": None,
    }
    atomic_write_with(out, lambda f: torch.save(state, f))
    logger.info("wrote %s: %s, %d layers, max layer difference %.2g", out, settings["model_type"], cfg["model"]["encoder_layers"], worst)
    return {"out": str(out), "layers": cfg["model"]["encoder_layers"], "differences": differences, "heads_left_out": heads, "normalize": normalize}
