from training.results_file import write_below_mark

MARK = "<!-- tables below are generated -->"


def test_head_is_kept_and_tables_replaced(tmp_path):
    p = tmp_path / "RESULTS.md"
    write_below_mark(p, MARK, "| a |\n")  # a new file: just the mark and the body
    assert p.read_text(encoding="utf-8") == f"{MARK}\n\n| a |\n"
    p.write_text("# Hand-written\n\nreading\n\n" + p.read_text(encoding="utf-8"), encoding="utf-8")
    write_below_mark(p, MARK, "| b |")
    assert p.read_text(encoding="utf-8") == f"# Hand-written\n\nreading\n\n{MARK}\n\n| b |\n"


def test_file_without_mark_is_replaced(tmp_path):
    p = tmp_path / "RESULTS.md"
    p.write_text("stale tables", encoding="utf-8")
    write_below_mark(p, MARK, "fresh")
    assert p.read_text(encoding="utf-8") == f"{MARK}\n\nfresh\n"
