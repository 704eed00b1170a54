"""The Flax Restormer and PromptIR prompt block against an independent PyTorch implementation.

The reference below is written from the published architectures (Restormer's MDTA and
GDFN, PromptIR's PromptGenBlock + fusion) in plain torch, NCHW, with the Flax weights
copied across; outputs must agree to 1e-5. A broken attention (softmax on the wrong
axis, q/k not L2-normalised) or a mis-wired U-Net changes every output.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cea_jax.models import backbone, baselines

torch = pytest.importorskip("torch")
F = torch.nn.functional
TOL = 1e-5


def _t(array) -> "torch.Tensor":
    return torch.from_numpy(np.asarray(array, np.float32).copy())


def _conv_weight(params: dict) -> "torch.Tensor":
    """Flax Dense [in, out] or Conv [kh, kw, in, out] kernel -> torch [out, in, kh, kw]."""
    kernel = np.asarray(params["kernel"])
    return _t(kernel.T[:, :, None, None] if kernel.ndim == 2 else kernel.transpose(3, 2, 0, 1))


def layer_norm(x, p):
    """Restormer's WithBias LayerNorm over the channels of an NCHW tensor."""
    mu = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + 1e-5) * _t(p["scale"])[:, None, None] + _t(p["bias"])[:, None, None]


def mdta(x, p, heads):
    b, c, h, w = x.shape
    qkv = F.conv2d(x, _conv_weight(p["qkv"]))
    qkv = F.conv2d(qkv, _conv_weight(p["qkv_dwconv"]), padding=1, groups=3 * c)
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in qkv.chunk(3, dim=1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * _t(p["temperature"])[None, :, None, None]
    out = (attn.softmax(dim=-1) @ v).reshape(b, c, h, w)
    return F.conv2d(out, _conv_weight(p["project_out"]))


def gdfn(x, p):
    y = F.conv2d(x, _conv_weight(p["project_in"]))
    y = F.conv2d(y, _conv_weight(p["dwconv"]), padding=1, groups=y.shape[1])
    y1, y2 = y.chunk(2, dim=1)
    return F.conv2d(F.gelu(y1) * y2, _conv_weight(p["project_out"]))


def block(x, p, heads):
    x = x + mdta(layer_norm(x, p["norm1"]), p["attn"], heads)
    return x + gdfn(layer_norm(x, p["norm2"]), p["ffn"])


def restormer(x, p, cfg):
    """Restormer's forward (encoder, latent, decoder with skips, refinement, global residual)."""
    def level(x, name, index, count):
        for i in range(count):
            x = block(x, p[f"{name}_{i}"], cfg.heads[index])
        return x

    def down(x, name):
        return F.pixel_unshuffle(F.conv2d(x, _conv_weight(p[name]["conv"]), padding=1), 2)

    def up(x, name):
        return F.pixel_shuffle(F.conv2d(x, _conv_weight(p[name]["conv"]), padding=1), 2)

    n = cfg.num_blocks
    enc1 = level(F.conv2d(x, _conv_weight(p["patch_embed"]), padding=1), "encoder_level1", 0, n[0])
    enc2 = level(down(enc1, "down1_2"), "encoder_level2", 1, n[1])
    enc3 = level(down(enc2, "down2_3"), "encoder_level3", 2, n[2])
    latent = level(down(enc3, "down3_4"), "latent", 3, n[3])
    dec3 = F.conv2d(torch.cat([up(latent, "up4_3"), enc3], 1), _conv_weight(p["reduce_chan_level3"]))
    dec3 = level(dec3, "decoder_level3", 2, n[2])
    dec2 = F.conv2d(torch.cat([up(dec3, "up3_2"), enc2], 1), _conv_weight(p["reduce_chan_level2"]))
    dec2 = level(dec2, "decoder_level2", 1, n[1])
    dec1 = level(torch.cat([up(dec2, "up2_1"), enc1], 1), "decoder_level1", 0, n[0])
    refined = level(dec1, "refinement", 0, cfg.num_refinement_blocks)
    return F.conv2d(refined, _conv_weight(p["output"]), padding=1) + x


def prompt_site(x, p, heads):
    """PromptIR: PromptGenBlock (softmax(Linear(GAP)) over prompts, bilinear resize, conv3x3),
    then concat, its noise_level transformer block and the 1x1 reduce_noise_level conv."""
    b, _, h, w = x.shape
    weights = F.linear(x.mean(dim=(-2, -1)), _t(p["linear"]["kernel"]).T, _t(p["linear"]["bias"])).softmax(dim=1)
    prompts = _t(p["prompt"]).permute(0, 3, 1, 2)[None]  # [1, L, D, S, S]
    prompt = (weights[:, :, None, None, None] * prompts.repeat(b, 1, 1, 1, 1)).sum(dim=1)
    prompt = F.interpolate(prompt, (h, w), mode="bilinear")
    prompt = F.conv2d(prompt, _conv_weight(p["conv3x3"]), padding=1)
    fused = block(torch.cat([x, prompt], 1), p["fuse"], heads)
    return F.conv2d(fused, _conv_weight(p["reduce"]))


def _nchw(x):
    return _t(x).permute(0, 3, 1, 2)


def _nhwc(x):
    return x.permute(0, 2, 3, 1).detach().numpy()


def _images(shape, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


def _perturbed(params, seed=0):
    """Perturb temperatures, norms and biases, so none is trivially 1 or 0 (kernels keep their init)."""
    def visit(path, leaf):
        if getattr(path[-1], "key", "") == "kernel":
            return leaf
        return leaf + 0.1 * jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), leaf.size), leaf.shape)
    return jax.tree_util.tree_map_with_path(visit, params)


def _init_perturbed(module, x, seed=0):
    return _perturbed(module.init(jax.random.PRNGKey(seed), x), seed + 1)


@pytest.mark.parametrize("heads", [1, 2])
def test_mdta_matches_torch(heads, helpers):
    x = _images((2, 6, 10, 8))
    module = backbone.MDTA(heads)
    params = _init_perturbed(module, x)
    ours = np.asarray(jax.jit(module.apply, compiler_options=helpers.FAST_COMPILE)(params, x))
    np.testing.assert_allclose(ours, _nhwc(mdta(_nchw(x), params["params"], heads)), atol=TOL, rtol=0)


def test_gdfn_and_transformer_block_match_torch(helpers):
    x = _images((2, 6, 10, 8), seed=1)
    module = backbone.GDFN(2.66)
    params = _init_perturbed(module, x)
    np.testing.assert_allclose(np.asarray(jax.jit(module.apply, compiler_options=helpers.FAST_COMPILE)(params, x)),
                               _nhwc(gdfn(_nchw(x), params["params"])), atol=TOL, rtol=0)
    module = backbone.TransformerBlock(2, 2.66)
    params = _init_perturbed(module, x, seed=2)
    np.testing.assert_allclose(np.asarray(jax.jit(module.apply, compiler_options=helpers.FAST_COMPILE)(params, x)),
                               _nhwc(block(_nchw(x), params["params"], 2)), atol=TOL, rtol=0)


def test_full_small_restormer_matches_torch(tiny, helpers):
    """The session's tiny model (odd size: reflect-padded to a multiple of 8 and cropped back)."""
    model = tiny("none")
    x = helpers.images(3)
    params = _perturbed(model.variables, seed=4)
    ours, _ = model.forward(params, x)
    h, w = x.shape[1:3]
    padded = F.pad(_nchw(x), (0, -w % 8, 0, -h % 8), mode="reflect")
    ref = restormer(padded, params["params"]["restormer"], model.config)[:, :, :h, :w]
    np.testing.assert_allclose(np.asarray(ours), _nhwc(ref), atol=TOL, rtol=0)


def test_promptir_prompt_block_matches_torch(helpers):
    x = _images((2, 6, 10, 16), seed=5)
    module = baselines.PromptSite(prompt_len=5, prompt_dim=8, prompt_size=4, out_channels=16, num_heads=2,
                                  expansion=2.66)
    params = _init_perturbed(module, x, seed=6)
    ours, _ = jax.jit(module.apply, compiler_options=helpers.FAST_COMPILE)(params, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(ours), _nhwc(prompt_site(_nchw(x), params["params"], 2)), atol=TOL, rtol=0)
