"""Prompt processors on tiny random models: embeddings, on-disk cache, encoder release, ranks."""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import weakref
from pathlib import Path

import pytest
import torch

from studio import distributed
from studio.distributed import DistContext
from studio.errors import ConfigError
from studio_dreamfusion.prompts import cache
from studio_dreamfusion.prompts.deep_floyd import DeepFloydPromptProcessor
from studio_dreamfusion.prompts.stable_diffusion import StableDiffusionPromptProcessor

CPU = torch.device("cpu")


def sd_processor(model: Path, **cfg: object) -> StableDiffusionPromptProcessor:
    return StableDiffusionPromptProcessor(
        {"pretrained_model_name_or_path": str(model), **cfg}, device=CPU
    )


def forbid_encoder(monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
    def fail(self: object) -> None:
        raise AssertionError("the text encoder was loaded")

    monkeypatch.setattr(cls, "load_text_encoder", fail)


def test_sd_embeddings_equal_direct_clip_encoding(tiny_sd_model: Path, studio_cache_dir: Path):
    from transformers import AutoTokenizer, CLIPTextModel

    out = sd_processor(tiny_sd_model, prompt="a red chair", negative_prompt="blue")()
    tokenizer = AutoTokenizer.from_pretrained(tiny_sd_model, subfolder="tokenizer")
    model = CLIPTextModel.from_pretrained(tiny_sd_model, subfolder="text_encoder").eval()
    prompts = ["a red chair", "blue", *out.prompts_vd]
    ids = tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        direct = model(ids)[0]
    assert out.prompts_vd[1] == "a red chair, front view"
    assert out.text_embeddings.shape == (77, 32) and out.text_embeddings_vd.shape == (4, 77, 32)
    torch.testing.assert_close(out.text_embeddings, direct[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.uncond_text_embeddings, direct[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.text_embeddings_vd, direct[2:], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.uncond_text_embeddings_vd, direct[1:2].expand(4, -1, -1))
    # different prompts really give different embeddings (the checks above could not pass vacuously)
    assert (direct[2] - direct[3]).abs().max() > 1e-3


def test_cache_files_then_second_construction_encodes_nothing(
    tiny_sd_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = sd_processor(tiny_sd_model, prompt="a cat")()
    folder = studio_cache_dir / "text_embeddings"
    model_id = cache.model_cache_id(str(tiny_sd_model))
    prompts = ["a cat", "", *first.prompts_vd]
    expected = {hashlib.md5(f"{model_id}-{p}".encode()).hexdigest() + ".pt" for p in prompts}
    assert {p.name for p in folder.iterdir()} == expected  # 6 files, nothing temporary left

    forbid_encoder(monkeypatch, StableDiffusionPromptProcessor)
    second = sd_processor(tiny_sd_model, prompt="a cat")()
    assert torch.equal(second.text_embeddings_vd, first.text_embeddings_vd)
    assert torch.equal(second.uncond_text_embeddings, first.uncond_text_embeddings)

    with pytest.raises(AssertionError, match="text encoder was loaded"):
        sd_processor(tiny_sd_model, prompt="a cat", use_cache=False)  # recomputes everything
    with pytest.raises(AssertionError, match="text encoder was loaded"):
        sd_processor(tiny_sd_model, prompt="a dog")  # new prompt -> must encode


def test_cache_key_depends_on_model_and_prompt(tmp_path: Path) -> None:
    key = cache.cache_key("org/model-a", "a cat")
    assert key == hashlib.md5(b"org/model-a-a cat").hexdigest()
    assert key != cache.cache_key("org/model-b", "a cat")
    assert key != cache.cache_key("org/model-a", "a dog")
    assert cache.cache_path("m", "p", tmp_path) == tmp_path / f"{cache.cache_key('m', 'p')}.pt"


def test_local_model_ids_carry_a_fingerprint_of_the_text_encoder(
    tiny_sd_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Retrained weights under the same folder name must not meet stale cached embeddings."""
    assert cache.model_cache_id("org/some-hub-model") == "org/some-hub-model"  # reference key
    model = shutil.copytree(tiny_sd_model, tmp_path / "model")
    before = cache.model_cache_id(str(model))
    assert before.startswith(f"{model}@") and before == cache.model_cache_id(str(model))
    (model / "unet" / "config.json").touch()  # not a text-encoder file: same key
    assert cache.model_cache_id(str(model)) == before
    sd_processor(model, prompt="a cat")
    weights = next((model / "text_encoder").glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cache.model_cache_id(str(model)) != before
    forbid_encoder(monkeypatch, StableDiffusionPromptProcessor)
    with pytest.raises(AssertionError, match="text encoder was loaded"):
        sd_processor(model, prompt="a cat")  # new weights -> encoded again


def test_embeddings_live_in_studios_cache_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.embeddings_dir() == tmp_path / "text_embeddings"
    monkeypatch.delenv("STUDIO_CACHE_DIR")
    assert cache.embeddings_dir() == tmp_path / "xdg" / "studio" / "text_embeddings"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.embeddings_dir() == Path.home() / ".cache" / "studio" / "text_embeddings"
    monkeypatch.setenv("STUDIO_CACHE_DIR", "~/studio-cache")
    assert cache.embeddings_dir() == Path.home() / "studio-cache" / "text_embeddings"


def test_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "emb" / "k.pt"
    cache.save_embedding(path, torch.ones(2, 3))
    replaced: list[tuple[str, str]] = []
    real_replace = cache.os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", spy)
    cache.save_embedding(path, torch.full((2, 3), 2.0))
    ((src, dst),) = replaced
    assert Path(src).parent == path.parent and Path(src) != path and dst == str(path)
    assert torch.equal(cache.load_embedding(path, CPU), torch.full((2, 3), 2.0))

    def broken_save(obj: object, handle: object) -> None:
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.save_embedding(path, torch.zeros(2, 3))
    # the old file is intact and no temporary file is left behind
    assert torch.equal(cache.load_embedding(path, CPU), torch.full((2, 3), 2.0))
    assert [p.name for p in path.parent.iterdir()] == ["k.pt"]


def test_encoder_released_after_encoding(
    tiny_sd_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs: list[weakref.ref] = []
    real_load = StableDiffusionPromptProcessor.load_text_encoder

    def tracked(self: StableDiffusionPromptProcessor):
        encoder = real_load(self)
        refs.extend([weakref.ref(encoder.model), weakref.ref(encoder.tokenizer)])
        return encoder

    monkeypatch.setattr(StableDiffusionPromptProcessor, "load_text_encoder", tracked)
    processor = sd_processor(tiny_sd_model, prompt="a dog")
    gc.collect()
    assert len(refs) == 2 and all(r() is None for r in refs)
    assert processor().text_embeddings.shape == (77, 32)


def test_lib_prompt_resolved(tiny_sd_model: Path, studio_cache_dir: Path) -> None:
    out = sd_processor(tiny_sd_model, prompt="lib:delicious_hamburger")()
    assert out.prompt == "a delicious hamburger"
    assert out.prompts_vd[3] == "a delicious hamburger, overhead view"
    with pytest.raises(ConfigError, match="matches 3 prompts"):
        sd_processor(tiny_sd_model, prompt="lib:hamburger")


def test_output_carries_perp_neg_settings(tiny_sd_model: Path, studio_cache_dir: Path) -> None:
    out = sd_processor(
        tiny_sd_model, prompt="a cat", use_perp_neg=True, perp_neg_f_sb=[2.0, 0.25, 0.0]
    )()
    assert out.use_perp_neg and out.perp_neg_f_sb == (2.0, 0.25, 0.0)
    assert out.perp_neg_f_fs == (4.0, 0.5, -2.426)


def test_non_zero_rank_waits_and_reads_the_cache(
    tiny_sd_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "barrier", lambda ctx: events.append(f"barrier{ctx.rank}"))

    monkeypatch.setattr(distributed, "context_from_env", lambda: DistContext(0, 2, 0))
    rank0 = sd_processor(tiny_sd_model, prompt="a cat")()
    assert events == ["barrier0"]

    forbid_encoder(monkeypatch, StableDiffusionPromptProcessor)
    monkeypatch.setattr(distributed, "context_from_env", lambda: DistContext(1, 2, 1))
    rank1 = sd_processor(tiny_sd_model, prompt="a cat", use_cache=False)()  # never encodes
    assert events == ["barrier0", "barrier1"]
    assert torch.equal(rank1.text_embeddings_vd, rank0.text_embeddings_vd)


def test_deep_floyd_embeddings_respect_attention_mask(
    tiny_if_model: Path, studio_cache_dir: Path
) -> None:
    from transformers import AutoTokenizer, T5EncoderModel

    out = DeepFloydPromptProcessor(
        {"pretrained_model_name_or_path": str(tiny_if_model), "prompt": "a cat"}, device=CPU
    )()
    tokenizer = AutoTokenizer.from_pretrained(tiny_if_model, subfolder="tokenizer")
    model = T5EncoderModel.from_pretrained(tiny_if_model, subfolder="text_encoder").eval()
    tokens = tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        masked = model(tokens.input_ids, attention_mask=tokens.attention_mask)[0][0]
        unmasked = model(tokens.input_ids)[0][0]
    assert out.text_embeddings.shape == (77, 32)
    torch.testing.assert_close(out.text_embeddings, masked, rtol=0, atol=1e-6)
    assert (out.text_embeddings - unmasked).abs().max() > 1e-3  # the mask matters


@pytest.mark.parametrize("missing", ["bitsandbytes", "accelerate"])
def test_deep_floyd_8bit_without_its_packages_is_a_clear_error(
    tiny_if_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from studio_dreamfusion.prompts import deep_floyd

    monkeypatch.setattr(deep_floyd, "importable", lambda name: name != missing)
    with pytest.raises(ConfigError, match=rf"load_in_8bit=true needs the package\(s\) {missing}"):
        DeepFloydPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_if_model), "load_in_8bit": True},
            device=CPU,
        )


def test_deep_floyd_8bit_encoder_has_int8_layers_and_close_embeddings(
    tiny_if_model: Path, studio_cache_dir: Path
) -> None:
    bnb = pytest.importorskip("bitsandbytes")  # `make test` installs it
    pytest.importorskip("accelerate")
    prompts = ["a cat", "a small red fox on a hill"]

    def processor(load_in_8bit: bool) -> DeepFloydPromptProcessor:
        return DeepFloydPromptProcessor(
            {
                "pretrained_model_name_or_path": str(tiny_if_model),
                "prompt": "a cat",
                "load_in_8bit": load_in_8bit,
                "use_cache": False,
            },
            device=CPU,
        )

    int8, full = processor(True), processor(False)
    encoder = int8.load_text_encoder()
    linears = {n: m for n, m in encoder.model.named_modules() if isinstance(m, torch.nn.Linear)}
    # transformers keeps T5's feed-forward output projections (`wo`) unquantised, as IF does
    quantised_layers = {n: m for n, m in linears.items() if not n.endswith(".wo")}
    assert len(quantised_layers) > len(linears) // 2
    assert all(isinstance(m, bnb.nn.Linear8bitLt) for m in quantised_layers.values())
    assert all(m.weight.dtype == torch.int8 for m in quantised_layers.values())
    with torch.no_grad():
        quantised = int8.encode_prompts(encoder, prompts).float()
        reference = full.encode_prompts(full.load_text_encoder(), prompts)
    relative = (quantised - reference).norm() / reference.norm()
    assert 0 < relative < 0.05, relative  # quantised, and still the same embeddings
    assert int8().text_embeddings.shape == (77, 32)  # the whole processor runs on it


@pytest.mark.parametrize("cause", ["No GPU found. A GPU is needed for quantization.", ""])
def test_deep_floyd_8bit_quantisation_failure_is_a_clear_error(
    tiny_if_model: Path, studio_cache_dir: Path, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("accelerate")
    from transformers import T5EncoderModel

    def no_gpu(*args: object, **kwargs: object) -> None:
        raise RuntimeError(cause)

    monkeypatch.setattr(T5EncoderModel, "from_pretrained", no_gpu)
    with pytest.raises(ConfigError) as caught:  # the processor encodes when it is built
        DeepFloydPromptProcessor(
            {"pretrained_model_name_or_path": str(tiny_if_model), "load_in_8bit": True},
            device=CPU,
        )
    message = str(caught.value)
    assert "could not quantise the T5 encoder on cpu" in message
    assert f"(RuntimeError: {cause})" in message and "load_in_8bit=false" in message


def test_default_model_ids_and_spawn_accepted() -> None:
    assert (
        StableDiffusionPromptProcessor.Config().pretrained_model_name_or_path
        == "stabilityai/stable-diffusion-2-1-base"
    )
    assert (
        DeepFloydPromptProcessor.Config().pretrained_model_name_or_path == "DeepFloyd/IF-I-XL-v1.0"
    )
    cfg = StableDiffusionPromptProcessor.Config(spawn=False)
    assert cfg.overhead_threshold == 60.0 and cfg.front_threshold == 45.0
