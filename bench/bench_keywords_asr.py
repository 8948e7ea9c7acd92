"""Keyword hits on recognised text vs on the true text of the same audio: precision and recall.

For every utterance the lexicon is run on the TRUE transcript (the reference hits) and on the ASR transcript
of its audio, three ways: plain ``match(text)``, ``match(text, asr=True)`` (spoken digits + toneless pinyin)
and the same with ``phonetic_fuzzy=True`` (zh/z, ch/c, sh/s, n/l, -ng/-n merged).  A hit is the pair
(term, negated); precision = ASR hits also in the reference / ASR hits, recall = reference hits found / reference
hits (multisets per utterance, summed).  Category level: the pair (category, negated).  "stage ok" = the
utterance's counted stage hint is the same on ASR text as on the true text.

Audio, each reported separately:
* ``aishell``: the real AISHELL sample (50 read utterances, all of them; 8 kHz telephone band and 16 kHz),
  hypotheses from ``bench/out/asr_real.jsonl`` (setting ``--setting``, written by bench/bench_asr_real.py);
  news/voice-assistant text, so it has very few keywords: it mainly measures false hits;
* ``espeak-calls``: every turn (both roles) of sample_audio/call_escalating_8k.wav and call_calm_8k.wav,
  cut from its own channel at the sidecar's true times (± 0.3 s), 8 kHz telephone band;
* ``espeak-corpus``: ``scripts/synth_mandarin.py make_corpus`` (60 customer-service sentences, 8 kHz).
  espeak speech is synthetic (robotic, far harder for Whisper than people): keyword-rich, but not real speech;
* ``neural-call customer``: the 7 customer turns of sample_audio/call_escalating_neural_8k.flac (a neural TTS
  voice, synthetic too, but one Whisper recognises nearly word for word; angry turns = faster/higher/louder).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/bench_keywords_asr.py --results bench/RESULTS_asr.md
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.asr.engine import WhisperEngine  # noqa: E402
from pipelines.settings import Settings  # noqa: E402
from pipelines.text.lexicon import KeywordLexicon, LexiconResult  # noqa: E402

log = logging.getLogger("nuqi.bench.keywords_asr")
CACHE = REPO / "bench" / "out" / "kw_asr_hyps.jsonl"
START, END = "<!-- keyword table: bench/bench_keywords_asr.py -->", "<!-- end keyword table -->"


def call_turns(files: tuple[str, ...], set_name: str, roles: tuple[str, ...] = ("agent", "customer")) -> list[dict]:
    """The turns of sample calls (``roles`` only), each cut from its own channel at the sidecar's times ± 0.3 s."""
    out = []
    for file in files:
        name = Path(file).stem
        audio, rate = sf.read(REPO / "sample_audio" / file, dtype="float32")
        meta = json.loads((REPO / "sample_audio" / f"{name}.json").read_text(encoding="utf-8"))
        for i, t in enumerate(meta["turns"]):
            if t["role"] not in roles:
                continue
            ch = meta["channels"][t["role"]]
            a, b = max(0, int((t["start"] - 0.3) * rate)), int((t["end"] + 0.3) * rate)
            out.append({"set": set_name, "id": f"{name}#{i}:{t['role']}", "ref": t["text"],
                        "audio": audio[a:b, ch], "rate": rate})
    return out


def espeak_call_turns() -> list[dict]:
    return call_turns(("call_escalating_8k.wav", "call_calm_8k.wav"), "espeak-calls")


def neural_call_turns() -> list[dict]:
    """The customer turns of the neural-voice rendering of the escalating call (its agent is espeak)."""
    return call_turns(("call_escalating_neural_8k.flac",), "neural-call customer", roles=("customer",))


def espeak_corpus(n: int = 60) -> list[dict]:
    spec = importlib.util.spec_from_file_location("synth_mandarin", REPO / "scripts" / "synth_mandarin.py")
    synth = importlib.util.module_from_spec(spec)
    sys.modules["synth_mandarin"] = synth
    spec.loader.exec_module(synth)
    d = REPO / "bench" / "out" / "asr_corpus" / f"8k_n{n}_seed0"
    if not (d / "manifest.csv").is_file():
        synth.make_corpus(d, n=n, sample_rate=8000, seed=0)
    with open(d / "manifest.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        audio, rate = sf.read(d / r["file"], dtype="float32")
        out.append({"set": "espeak-corpus", "id": r["file"], "ref": r["text"], "audio": audio, "rate": rate})
    return out


def transcribe_espeak(engine: WhisperEngine) -> list[dict]:
    done = {}
    if CACHE.is_file():
        for line in CACHE.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            done[(r["set"], r["id"])] = r
    out = []
    for item in espeak_call_turns() + espeak_corpus() + neural_call_turns():
        key = (item["set"], item["id"])
        if key not in done:
            hyp = "".join(s.text for s in engine.transcribe(item["audio"], item["rate"]))
            done[key] = {"set": item["set"], "id": item["id"], "ref": item["ref"], "hyp": hyp}
            with open(CACHE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(done[key], ensure_ascii=False) + "\n")
            log.info("%s %s | %s | %s", *key, item["ref"], hyp)
        out.append(done[key])
    return out


def aishell_hyps(setting: str) -> list[dict]:
    path = REPO / "bench" / "out" / "asr_real.jsonl"
    out = []
    if not path.is_file():
        log.warning("%s not found (bench/bench_asr_real.py writes it): no AISHELL rows", path)
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["setting"] == setting:
            out.append({"set": f"aishell {r['rate'] // 1000} kHz", "id": r["path"], "ref": r["ref"], "hyp": r["hyp"]})
    return out


def _keys(res: LexiconResult, level: str) -> Counter:
    return Counter((h.term if level == "term" else h.category, h.negated) for h in res.hits)


def score(items: list[dict], lex: KeywordLexicon, fuzzy: KeywordLexicon) -> list[dict]:
    rows = []
    sets = list(dict.fromkeys(i["set"] for i in items))
    for name in sets + ["all espeak"]:
        group = [i for i in items if i["set"] == name or (name == "all espeak" and i["set"].startswith("espeak"))]
        refs = [lex.match(i["ref"]) for i in group]
        for how, fn in (("plain match(hyp)", lambda t: lex.match(t)),
                        ("match(hyp, asr=True)", lambda t: lex.match(t, asr=True)),
                        ("asr=True, fuzzy pinyin", lambda t: fuzzy.match(t, asr=True))):
            hyps = [fn(i["hyp"]) for i in group]
            row = {"set": name, "utts": len(group), "matcher": how}
            for level in ("term", "category"):
                tp = n_hyp = n_ref = 0
                for r, h in zip(refs, hyps, strict=True):
                    kr, kh = _keys(r, level), _keys(h, level)
                    tp += sum((kr & kh).values())
                    n_hyp += sum(kh.values())
                    n_ref += sum(kr.values())
                row[level] = (tp, n_hyp, n_ref)
            row["stage_ok"] = sum(r.stage_hint == h.stage_hint for r, h in zip(refs, hyps, strict=True))
            row["false_stage"] = sum(r.stage_hint == 0 and h.stage_hint > 0 for r, h in zip(refs, hyps, strict=True))
            rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    def pr(t):
        tp, nh, nr = t
        p = f"{tp / nh:.2f}" if nh else "–"
        r = f"{tp / nr:.2f}" if nr else "–"
        return f"{p} / {r} ({tp}/{nh}/{nr})"

    lines = ["| audio | utts | matcher on ASR text | term P / R (tp/asr/true) | category P / R | stage hint same | "
             "false stage (true 0, ASR > 0) |", "|---|---:|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['utts']} | {r['matcher']} | {pr(r['term'])} | {pr(r['category'])} | "
                     f"{r['stage_ok']}/{r['utts']} | {r['false_stage']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", default="chosen", help="the bench_asr_real.py setting whose AISHELL hyps to score")
    ap.add_argument("--results", type=Path, default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    engine = WhisperEngine.from_settings(settings)
    items = aishell_hyps(a.setting) + transcribe_espeak(engine)
    rows = score(items, KeywordLexicon.load(), KeywordLexicon.load(phonetic_fuzzy=True))
    md = render(rows)
    print(md)
    if a.results:
        text = a.results.read_text(encoding="utf-8")
        if START in text:
            head, rest = text.split(START, 1)
            a.results.write_text(head + START + "\n" + md + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
