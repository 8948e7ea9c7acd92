"""PII redaction: what must be masked, what must be left alone."""
from __future__ import annotations

import random

import pytest

from pipelines.pii import find_pii, id_card_valid, luhn_valid, redact, redact_obj


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_valid(prefix + d):
            return prefix + d
    raise AssertionError


def _id_complete(first17: str) -> str:
    for c in "0123456789X":
        if id_card_valid(first17 + c):
            return first17 + c
    raise AssertionError


ID_X = "11010519491231002X"  # the GB 11643 example: check character X
ID_DIGIT = _id_complete("44030419900307123")
CARD16 = _luhn_complete("622202000012345")
CARD19 = _luhn_complete("621700001234567890")


def test_checksums():
    assert id_card_valid(ID_X) and id_card_valid(ID_X.lower())
    assert not id_card_valid(ID_X[:-1] + "1")
    assert luhn_valid("4539578763621486") and not luhn_valid("4539578763621487")
    assert luhn_valid(CARD16) and len(CARD19) == 19


@pytest.mark.parametrize("text, tag", [
    ("我的手机号是13812345678，快点处理", "[手机号]"),
    ("电话 138 1234 5678 打给我", "[手机号]"),
    ("号码138-1234-5678", "[手机号]"),
    ("+86 139 1234 5678", "[手机号]"),
    ("+8613912345678", "[手机号]"),
    ("008615012345678", "[手机号]"),
    ("号码是１３８１２３４５６７８", "[手机号]"),  # full-width digits
    ("我电话幺三八一二三四五六七八", "[手机号]"),  # spoken digits
    ("座机010-12345678找我", "[座机]"),
    ("座机0755 8765 4321", "[座机]"),
    ("座机(021)87654321", "[座机]"),
    ("座机02187654321", "[座机]"),
    (f"身份证{ID_X}。", "[身份证]"),
    (f"身份证号{ID_DIGIT}", "[身份证]"),
    (f"卡号{CARD16}扣了我钱", "[银行卡]"),
    (f"卡号 {CARD16[:4]} {CARD16[4:8]} {CARD16[8:12]} {CARD16[12:]} 扣了我钱", "[银行卡]"),
    (f"卡号{CARD19}", "[银行卡]"),
    ("邮箱 zhang.san+vip@mail.example.com.cn 发我", "[邮箱]"),
    # issue 17 item 12: odd formats that came back raw
    ("手机137.1234.5678", "[手机号]"),
    ("1 3 6 1 2 3 4 5 6 7 8", "[手机号]"),
    ("号码 138 - 1234 - 5678", "[手机号]"),
    ("身份证110105491231002", "[身份证]"),  # 15-digit first-generation number
    ("身份证 110105 491231 002 号", "[身份证]"),
    (f"身份证 {ID_X[:6]} {ID_X[6:14]} {ID_X[14:]}", "[身份证]"),
    ("卡号 6222 0212 3456 7890 扣了我钱", "[银行卡]"),  # grouped, fails Luhn (a misheard digit)
    ("卡号6222-0212-3456-7890-123", "[银行卡]"),
    ("卡号 6222  0212  3456  7890", "[银行卡]"),
    (f"卡号 {CARD19[:6]} {CARD19[6:12]} {CARD19[12:]}", "[银行卡]"),
])
def test_masks(text, tag):
    out = redact(text)
    assert tag in out, out
    digits = "".join(c for c in out if c.isdigit())
    assert len(digits) < 7, f"digits left behind: {out}"
    assert "@" not in out


def test_multiple_and_surrounding_text_kept():
    text = f"我要投诉！电话13812345678，邮箱a@b.cn，卡号{CARD16}，你们太过分了"
    out = redact(text)
    assert out == "我要投诉！电话[手机号]，邮箱[邮箱]，卡号[银行卡]，你们太过分了"
    kinds = [f.kind for f in find_pii(text)]
    assert kinds == ["mobile", "email", "bank_card"]


@pytest.mark.parametrize("text", [
    "订单号 20240512 已经三天了",  # 8 digits: not a phone
    "金额1234567元",
    "12812345678",  # 12x is not a mobile prefix
    "138123456789",  # 12 digits: not a mobile
    "4539578763621487",  # 16 digits failing Luhn
    "11010519491231002Y",
    "110105194912310021",  # wrong ID check character (and fails Luhn)
    "一二三四五六，我数到六了",
    "我等了两个小时，一个人都没有",
    "版本 1.3.8 更新后",
    "time 10:30-11:45",
    "订单号 2024 0618 已经三天了",
    "身份证号位数不对 110105491331002",  # month 13: not a date
])
def test_leaves_non_pii_alone(text):
    assert redact(text) == text


def test_redact_obj_and_empty():
    obj = {"text": "打13812345678", "n": 3, "nested": [{"t": "a@b.cn"}, None, 1.5], "13812345678": "k"}
    out = redact_obj(obj)
    assert out == {"text": "打[手机号]", "n": 3, "nested": [{"t": "[邮箱]"}, None, 1.5], "13812345678": "k"}
    assert redact("") == "" and redact_obj(None) is None


def test_random_numbers_never_leak():
    rng = random.Random(3)
    for _ in range(300):
        phone = "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
        card = _luhn_complete("62" + "".join(rng.choice("0123456789") for _ in range(rng.randint(13, 16))))
        ident = _id_complete(rng.choice("123456") + "".join(rng.choice("0123456789") for _ in range(5))
                             + str(rng.randint(1950, 2010)) + f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
                             + "".join(rng.choice("0123456789") for _ in range(3)))
        sep = rng.choice(["", " ", "-"])
        spaced_phone = phone[:3] + sep + phone[3:7] + sep + phone[7:]
        text = f"客户说{spaced_phone}，卡{card}，身份证{ident}。"
        out = redact(text)
        for secret in (phone, card, ident):
            assert secret not in out.replace(" ", "").replace("-", ""), (text, out)
        assert out.count("[") == 3, (text, out)


def test_id_digest_and_meta():
    from pipelines.pii import id_digest, redact_meta

    d = id_digest("13812345678")
    assert len(d) == 16 and "13812345678" not in d and d == id_digest("13812345678")
    assert id_digest("13812345678", key="s3cret") != d
    assert id_digest("\ud800") != id_digest("x")  # a lone surrogate does not raise
    meta = {"phone": "13812345678", "id": ID_X, "ani": 13812345678, "queue": "billing 13812345678",
            "skill": "vip", "tags": ["a", {"n": "王小明"}], "vip": True, "none": None}
    out = redact_meta(meta, keep={"queue", "skill"})
    dumped = str(out)
    for secret in ("13812345678", ID_X, "王小明"):
        assert secret not in dumped
    assert out["queue"] == "billing [手机号]" and out["skill"] == "vip"  # kept fields are still redacted
    assert out["phone"] == "***78" and out["ani"] == "***78" and out["tags"] == ["***", {"n": "***"}]
    assert out["vip"] is True and out["none"] is None
