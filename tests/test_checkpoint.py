"""Model folders: save -> load round trip, strict and clear failures, partial (staged) folders."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from avlink_cli.avlink import Ablation, AVLink
from avlink_cli.checkpoint import (
    IncompleteModelError,
    IntegrityError,
    ModelFolderError,
    StateDictError,
    load_model,
    save_model,
)
from avlink_cli.codecs import NeuralVocoder
from avlink_cli.manifest import write_manifest
from avlink_cli.presets import VocoderConfig, get_preset

TINY = get_preset("tiny").with_(vocoder=VocoderConfig(dim=16, hidden=32, layers=1))


def trained_model(ablation: Ablation | None = None) -> AVLink:
    torch.manual_seed(0)
    model = AVLink(TINY, ablation)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def velocity(model: AVLink) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(1, TINY.n_audio_tokens, TINY.audio.token_dim, generator=gen)
    video = torch.randn(1, TINY.n_video_tokens, TINY.video.token_dim, generator=gen)
    ctx = model.encode_text(["a drum"])
    cache = model.prepare_condition(
        "v2a", video, ctx, noise=torch.randn(video.shape, generator=gen)
    )
    with torch.no_grad():
        return model.velocity("v2a", audio, 0.5, cache, ctx)


def vocoder() -> NeuralVocoder:
    torch.manual_seed(1)
    return NeuralVocoder(TINY.vocoder, TINY.audio).eval()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    save_model(tmp_path / "m", trained_model(), vocoder=vocoder(), meta={"steps": 3})
    return tmp_path / "m"


def rewrite(folder: Path, component: str, edit) -> None:
    """Change a component's tensors and re-hash, so only the state-dict check can object."""
    path = folder / f"{component}.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
    write_manifest(folder, [p.name for p in folder.iterdir() if p.name != "manifest.json"])


def test_round_trip_gives_identical_outputs(folder: Path) -> None:
    loaded = load_model(folder)
    assert loaded.complete and loaded.meta == {"steps": 3}
    assert set(loaded.loaded) == {"video_dit", "audio_dit", "text", "fusion", "vocoder"}
    assert torch.equal(velocity(loaded.model), velocity(trained_model()))
    mel = torch.randn(1, 64, 8)
    assert torch.equal(loaded.vocoder(mel), vocoder()(mel))
    assert not any(
        p.requires_grad
        for n in ("video_dit", "audio_dit", "text")
        for p in getattr(loaded.model, n).parameters()
    )
    info = json.loads((folder / "model.json").read_text())
    assert info["components"]["fusion"]["params"] == sum(
        p.numel() for p in loaded.model.fusion.parameters()
    )


def test_ablation_and_dtype_survive(tmp_path: Path) -> None:
    save_model(tmp_path, trained_model(Ablation(external_features=True, rope_by_index=True)))
    loaded = load_model(tmp_path, dtype=torch.bfloat16)
    assert loaded.model.ablation == Ablation(external_features=True, rope_by_index=True)
    assert "external" in loaded.loaded and loaded.vocoder is None
    assert loaded.model.fusion.blocks[0].audio.proj_in.weight.dtype == torch.bfloat16


def test_a_flipped_byte_is_an_integrity_error(folder: Path) -> None:
    path = folder / "fusion.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="fusion.safetensors.*sha256"):
        load_model(folder)


def test_a_missing_file_is_an_integrity_error(folder: Path) -> None:
    (folder / "text.safetensors").unlink()
    with pytest.raises(IntegrityError, match="text.safetensors"):
        load_model(folder)


def test_a_wrong_shape_names_the_key(folder: Path) -> None:
    rewrite(folder, "audio_dit", lambda t: t.__setitem__("head.proj.weight", torch.zeros(3, 3)))
    with pytest.raises(
        StateDictError, match=r"audio_dit.safetensors.*'head.proj.weight' has shape \(3, 3\)"
    ):
        load_model(folder)


def test_a_missing_key_names_the_key(folder: Path) -> None:
    rewrite(folder, "fusion", lambda t: t.pop("blocks.0.video.proj_in.bias"))
    with pytest.raises(
        StateDictError, match="fusion.safetensors: missing key 'blocks.0.video.proj_in.bias'"
    ):
        load_model(folder)


def test_an_extra_key_names_the_key(folder: Path) -> None:
    rewrite(folder, "text", lambda t: t.__setitem__("surprise", torch.zeros(1)))
    with pytest.raises(StateDictError, match="unexpected key 'surprise'"):
        load_model(folder)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="model.json"):
        load_model(tmp_path)


def test_staged_saves_and_partial_loads(tmp_path: Path) -> None:
    model = trained_model()
    save_model(tmp_path, model, vocoder=vocoder(), components=["vocoder"])
    save_model(tmp_path, model, components=["audio_dit", "text"], meta={"stage": "audio"})
    with pytest.raises(IncompleteModelError, match="video_dit.safetensors, fusion.safetensors"):
        load_model(tmp_path)
    partial = load_model(tmp_path, allow_partial=True)
    assert partial.missing == ("video_dit", "fusion") and not partial.complete
    assert set(partial.loaded) == {"audio_dit", "text", "vocoder"} and partial.meta == {
        "stage": "audio"
    }
    assert torch.equal(partial.model.audio_dit.head.proj.weight, model.audio_dit.head.proj.weight)
    assert (
        partial.model.fusion.blocks[0].audio.adaLN[-1].weight.abs().sum() == 0
    )  # fresh: zero gates
    save_model(tmp_path, model, components=["video_dit", "fusion"])
    assert load_model(tmp_path).complete
    assert torch.equal(velocity(load_model(tmp_path).model), velocity(model))


def test_a_folder_from_before_the_vocos_vocoder_loads(tmp_path: Path) -> None:
    """model.json of older folders records HiFi-GAN vocoder fields; without a vocoder file the
    folder still loads (the preset gets the default vocoder config), with one it fails strictly."""
    save_model(tmp_path, trained_model())
    legacy = {"channels": 128, "upsample_rates": [5, 4, 4, 2], "resblock_kernels": [3, 7]}
    info = json.loads((tmp_path / "model.json").read_text())
    info["preset"]["vocoder"] = legacy
    (tmp_path / "model.json").write_text(json.dumps(info))
    write_manifest(tmp_path, [p.name for p in tmp_path.iterdir() if p.name != "manifest.json"])
    loaded = load_model(tmp_path)
    assert loaded.complete and loaded.vocoder is None
    assert loaded.model.preset.vocoder == VocoderConfig()
    assert torch.equal(velocity(loaded.model), velocity(trained_model()))


def test_a_model_card_in_the_folder_does_not_disturb_strict_loading(tmp_path: Path) -> None:
    save_model(tmp_path, trained_model())
    card = Path(__file__).resolve().parent.parent / "weights" / "avsynth-s" / "README.md"
    (tmp_path / "README.md").write_bytes(card.read_bytes())  # not in the manifest
    loaded = load_model(tmp_path)
    assert loaded.complete and torch.equal(velocity(loaded.model), velocity(trained_model()))
