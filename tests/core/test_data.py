"""data: reading tables, the spec, checks (docs/reliability.md D1-D8) and splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from slimpajama_gui.core.data import (
    DatasetSpec,
    Encoded,
    demo_path,
    encode,
    guess_columns,
    label_counts,
    load_dataset,
    normalize_text,
    preview,
    read_table,
    validate_labels,
)
from slimpajama_gui.core.errors import UserError

SST2 = Path(__file__).resolve().parents[2].parent / "shared/data/sst2"

ROWS = [
    ("a warm, funny film", 1),
    ('he said "never again", and meant it', 0),
    ("tabs\tinside\ttext", 1),
    ("line one\nline two", 0),
    ("plain words only", 1),
    ("not bad at all", 1),
]


def write_csv(path: Path, rows, header=("sentence", "label"), delimiter=",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tsv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def balanced(n: int = 20, prefix: str = "text") -> list[tuple[str, int]]:
    return [(f"{prefix} number {i}", i % 2) for i in range(n)]


# --------------------------------------------------------------------------- D1


def test_D1_missing_label_column_lists_columns_and_how_to_map(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", [("good", "pos")], header=("sentence", "sentiment"))
    with pytest.raises(UserError) as err:
        load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    msg = str(err.value)
    assert "reviews.csv has no column 'label' (label_column)" in msg
    assert "Columns found: 'sentence', 'sentiment'" in msg
    assert "label_column: sentiment" in msg and "label_column: 1" in msg


def test_D1_missing_text_column_suggests_text_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("good", 1)], header=("review", "label"))
    with pytest.raises(UserError, match=r"no column 'sentence' \(text_column\)") as err:
        load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert "text_column: review" in str(err.value) and "'review', 'label'" in str(err.value)
    # mapping the column as the message says fixes it
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path), text_column="review"))
    assert ds.train.texts == ["good"]


def test_D1_never_suggests_the_text_column_as_the_label_column(tmp_path):
    """review,stars with text_column review: the label's example was 'review', the very
    column just given as the text (no name looked like a label, so the first column)."""
    path = write_csv(
        tmp_path / "d.csv", [("good", "up"), ("bad", "down")], header=("review", "stars")
    )
    with pytest.raises(UserError) as err:
        load_dataset(DatasetSpec(train=str(path), eval=str(path), text_column="review"))
    msg = str(err.value)
    assert "no column 'label' (label_column)" in msg
    assert "`label_column: stars`" in msg and "`label_column: 1`" in msg
    assert "label_column: review" not in msg
    ds = load_dataset(
        DatasetSpec(train=str(path), eval=str(path), text_column="review", label_column="stars")
    )
    assert ds.train.texts == ["good", "bad"]


def test_D1_column_index_out_of_range(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("good", 1)])
    with pytest.raises(UserError, match=r"label_column: 5 is not a column of d\.csv.*0 to 1"):
        load_dataset(DatasetSpec(train=str(path), eval=str(path), label_column=5))


# --------------------------------------------------------------------------- D2


def test_D2_non_utf8_names_line_byte_and_offers_encoding(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes(b"sentence\tlabel\nfine\t1\ncaf\xe9 au lait\t0\n")
    with pytest.raises(UserError) as err:
        read_table(path)
    msg = str(err.value)
    assert "latin.tsv" in msg and "not valid utf-8" in msg
    assert "line 3" in msg and "byte 4" in msg and "0xe9" in msg
    assert "encoding='cp1252'" in msg
    table = read_table(path, encoding="cp1252")
    assert table.rows[1] == ["café au lait", "0"]
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path), encoding="latin-1"))
    assert "café au lait" in ds.train.texts


def test_D2_utf8_bom_is_skipped_and_unknown_encoding_refused(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfsentence,label\nhello,1\n")
    assert read_table(path).columns == ["sentence", "label"]
    with pytest.raises(UserError, match="unknown encoding 'klingon'"):
        read_table(path, encoding="klingon")


# --------------------------------------------------------------------------- D3


def test_D3_empty_header_only_and_no_rows_left(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match=r"empty\.csv is empty"):
        read_table(empty)
    header = tmp_path / "header.tsv"
    header.write_text("sentence\tlabel\n\n")
    with pytest.raises(UserError, match=r"header\.tsv has a header .* but no rows"):
        load_dataset(DatasetSpec(train=str(header), eval=str(header)))
    blank = write_csv(tmp_path / "blank.csv", [("", 1), ("   ", 0)])
    with pytest.raises(
        UserError, match=r"blank\.csv has no rows left.*empty text in column 'sentence'"
    ):
        load_dataset(DatasetSpec(train=str(blank), eval=str(blank)))
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("\n\n")
    with pytest.raises(UserError, match=r"e\.jsonl is empty"):
        read_table(jsonl)


def test_empty_texts_are_skipped_with_a_warning(tmp_path):
    path = write_csv(tmp_path / "d.csv", [*balanced(10), ("", 1)])
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert len(ds.train) == 10
    assert any("d.csv line 12" in w and "skipped" in w for w in ds.warnings)


# --------------------------------------------------------------------------- D4


def test_D4_labels_outside_model_label_set_named_with_rows(tmp_path):
    path = write_csv(tmp_path / "three.csv", [("a", 0), ("b", 1), ("c", 2), ("d", 2)])
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert ds.num_labels == 3
    validate_labels(ds, 3)  # fits
    with pytest.raises(UserError) as err:
        validate_labels(ds, 2)
    msg = str(err.value)
    assert "num_labels=2" in msg and "'2' (id 2" in msg
    assert "three.csv lines 4, 5" in msg


def test_D4_negative_labels_refused(tmp_path):
    path = write_csv(tmp_path / "neg.csv", [("a", -1), ("b", 1)])
    with pytest.raises(UserError, match=r"negative labels -1 \(neg\.csv line 2\)") as err:
        load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert '["-1", "1"]' in str(err.value)  # the way out: name the labels
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path), labels=["-1", "1"]))
    assert ds.train.labels == [0, 1] and ds.label_names == ["-1", "1"]


def test_D4_mixed_label_types_refused(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("a", 0), ("b", 1)])
    dev = write_csv(tmp_path / "dev.csv", [("c", "pos")])
    with pytest.raises(UserError, match="mix numbers and names") as err:
        load_dataset(DatasetSpec(train=str(train), eval=str(dev)))
    assert "'pos' (dev.csv line 2)" in str(err.value)


def test_D4_fractional_and_missing_labels_refused_with_line(tmp_path):
    frac = write_csv(tmp_path / "frac.csv", [("a", 0), ("b", 0.5)])
    with pytest.raises(UserError, match=r"fractional labels: 0\.5 \(frac\.csv line 3\)"):
        load_dataset(DatasetSpec(train=str(frac), eval=str(frac)))
    missing = write_csv(tmp_path / "missing.csv", [("a", 0), ("b", ""), ("c", 1)])
    with pytest.raises(UserError, match=r"missing\.csv line 3 has no label in column 'label'"):
        load_dataset(DatasetSpec(train=str(missing), eval=str(missing)))
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"sentence": "a", "label": 0}\n{"sentence": "b"}\n')
    with pytest.raises(UserError, match=r"m\.jsonl line 2 has no label"):
        load_dataset(DatasetSpec(train=str(jsonl), eval=str(jsonl)))


def test_D4_values_not_in_explicit_labels(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "pos"), ("b", "neg"), ("c", "meh")])
    with pytest.raises(
        UserError, match=r"labels 'meh' \(d\.csv line 4\) are not in dataset\.labels"
    ):
        load_dataset(DatasetSpec(train=str(path), eval=str(path), labels=["neg", "pos"]))


def test_D6_quotes_commas_tabs_newlines_inside_quoted_text(tmp_path):
    path = write_csv(tmp_path / "q.csv", ROWS)
    table = read_table(path)
    assert [r[0] for r in table.rows] == [t for t, _ in ROWS]
    assert table.lines == [2, 3, 4, 5, 7, 8]  # the quoted newline takes two lines
    tsv = write_csv(tmp_path / "q.tsv", ROWS, delimiter="\t")
    assert read_table(tsv).rows == table.rows


def test_D6_ragged_rows_rejected_with_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('sentence,label\nfine,1\n"also, fine",0\nbroken, no quotes,1\n')
    with pytest.raises(UserError, match=r"ragged\.csv line 4 has 3 fields but the header has 2"):
        read_table(path)
    tsv = write_tsv(tmp_path / "ragged.tsv", ["sentence\tlabel", "ok\t1", "a\tb\t1"])
    with pytest.raises(UserError, match=r"ragged\.tsv line 3 has 3 fields.*tabs"):
        read_table(tsv)
    short = write_tsv(tmp_path / "short.tsv", ["sentence\tlabel", "ok\t1", "no label here"])
    with pytest.raises(UserError, match=r"short\.tsv line 3 has 1 field but the header has 2"):
        read_table(short)


def test_D6_broken_quoting_named_by_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('sentence,label\nok,1\n"closed" then more,0\n')
    with pytest.raises(UserError, match=r"bad\.csv line 3 cannot be read as CSV"):
        read_table(path)


def test_tsv_without_quoting_convention_still_reads(tmp_path):
    # Many TSV writers never quote: a text that starts with a quote is plain text.
    path = write_tsv(tmp_path / "glue.tsv", ["sentence\tlabel", '"great" fun\t1', 'say "hi"\t0'])
    assert read_table(path).rows == [['"great" fun', "1"], ['say "hi"', "0"]]


# --------------------------------------------------------------------------- D7, D8


def test_D7_one_class_warns_accuracy_meaningless(tmp_path):
    path = write_csv(tmp_path / "one.csv", [(f"text {i}", 1) for i in range(10)])
    ds = load_dataset(DatasetSpec(train=str(path)))
    assert any(
        "only one class ('1')" in w and "accuracy will be meaningless" in w for w in ds.warnings
    )


def test_D8_duplicates_across_train_and_eval_counted(tmp_path):
    train = write_csv(tmp_path / "train.csv", balanced(10))
    dev = write_csv(
        tmp_path / "dev.csv",
        [("TEXT   number 1", 1), ("text number 2 ", 0), ("fresh sentence", 1), ("another", 0)],
    )
    ds = load_dataset(DatasetSpec(train=str(train), eval=str(dev)))
    dup = [w for w in ds.warnings if "also appear in train" in w]
    assert dup and dup[0].startswith("2 of 4 eval rows")


# --------------------------------------------------------------------------- formats


def test_csv_tsv_jsonl_json_parquet_load_the_same_rows(tmp_path):
    rows = [(t, "pos" if y else "neg") for t, y in ROWS]
    paths = [
        write_csv(tmp_path / "d.csv", rows),
        write_csv(tmp_path / "d.tsv", rows, delimiter="\t"),
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"sentence": t, "label": y}) + "\n" for t, y in rows))
    arr = tmp_path / "d.json"
    arr.write_text(json.dumps([{"sentence": t, "label": y} for t, y in rows]))
    paths += [jsonl, arr]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(
            pa.table({"sentence": [t for t, _ in rows], "label": [y for _, y in rows]}),
            tmp_path / "d.parquet",
        )
        paths.append(tmp_path / "d.parquet")
    except ImportError:
        pass
    loaded = [load_dataset(DatasetSpec(train=str(p), eval=str(p))) for p in paths]
    for ds in loaded:
        assert ds.train.texts == [t for t, _ in rows]
        assert ds.label_names == ["neg", "pos"]
        assert ds.train.labels == [1 if y == "pos" else 0 for _, y in rows]


def test_format_override_and_unknown_suffix(tmp_path):
    path = write_csv(tmp_path / "data.txt", balanced(4), delimiter="\t")
    with pytest.raises(UserError, match=r"cannot tell the format of data\.txt.*format"):
        read_table(path)
    assert len(read_table(path, format="tsv")) == 4


def test_jsonl_bad_line_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sentence": "a", "label": 1}\n\n{"sentence": "b", label: 0}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl line 3 is not valid JSON"):
        read_table(path)


def test_integer_column_indices(tmp_path):
    path = write_csv(
        tmp_path / "d.tsv",
        [(1, "first text"), (0, "second text")],
        header=("y", "x"),
        delimiter="\t",
    )
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path), text_column=1, label_column=0))
    assert ds.train.texts == ["first text", "second text"] and ds.train.labels == [1, 0]


def test_string_labels_map_sorted_or_in_given_order(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "pos"), ("b", "neg"), ("c", "neutral")])
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert ds.label_names == ["neg", "neutral", "pos"]
    assert ds.train.labels == [2, 0, 1]
    ds = load_dataset(
        DatasetSpec(train=str(path), eval=str(path), labels=["neg", "pos", "neutral"])
    )
    assert ds.train.labels == [1, 0, 2]
    assert label_counts(ds.train) == {"neg": 1, "pos": 1, "neutral": 1}


def test_int_labels_keep_ids_and_gaps_warn(tmp_path):
    path = write_csv(tmp_path / "stars.csv", [("a", 1), ("b", 2), ("c", 3)])
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert ds.label_names == ["0", "1", "2", "3"] and ds.train.labels == [1, 2, 3]
    assert any("numbered from 1" in w for w in ds.warnings)
    ds = load_dataset(DatasetSpec(train=str(path), eval=str(path), labels=["1", "2", "3"]))
    assert ds.train.labels == [0, 1, 2]


def test_relative_paths_resolve_against_base_dir(tmp_path):
    (tmp_path / "data").mkdir()
    write_csv(tmp_path / "data" / "train.csv", balanced(10))
    ds = load_dataset(DatasetSpec(train="data/train.csv"), base_dir=tmp_path)
    assert len(ds.train) + len(ds.eval) == 10
    with pytest.raises(UserError, match=r"dataset file not found: .*nope\.csv \(dataset\.eval\)"):
        load_dataset(DatasetSpec(train="data/train.csv", eval="nope.csv"), base_dir=tmp_path)


# --------------------------------------------------------------------------- splits, spec


def test_seeded_split_is_deterministic_and_stratified(tmp_path):
    rows = [(f"text {i}", 0 if i < 80 else 1) for i in range(100)]  # 80 / 20
    path = write_csv(tmp_path / "d.csv", rows)
    a = load_dataset(DatasetSpec(train=str(path), eval_fraction=0.25, seed=7))
    b = load_dataset(DatasetSpec(train=str(path), eval_fraction=0.25, seed=7))
    c = load_dataset(DatasetSpec(train=str(path), eval_fraction=0.25, seed=8))
    assert a.eval.texts == b.eval.texts and a.train.texts == b.train.texts
    assert a.eval.texts != c.eval.texts
    assert label_counts(a.eval) == {"0": 20, "1": 5}
    assert label_counts(a.train) == {"0": 60, "1": 15}
    assert not set(a.eval.texts) & set(a.train.texts)
    assert a.eval.lines == sorted(a.eval.lines)  # file order kept


def test_max_rows_takes_a_seeded_sample(tmp_path):
    path = write_csv(tmp_path / "d.csv", balanced(200))
    spec = DatasetSpec(train=str(path), eval=str(path), max_rows=30, seed=3)
    a, b = load_dataset(spec), load_dataset(spec)
    assert len(a.train) == 30 and a.train.texts == b.train.texts
    assert a.train.texts != [t for t, _ in balanced(30)]  # a sample, not the head
    assert len(a.eval) == 200
    # Vocabulary pruning keeps the words of every train row, not only the sampled ones.
    assert a.vocabulary_rows() == ([t for t, _ in balanced(200)], None)
    # With eval held out of the sample: every row of the file but the eval rows.
    held = load_dataset(DatasetSpec(train=str(path), max_rows=30, seed=3))
    texts, _ = held.vocabulary_rows()
    assert len(texts) == 200 - len(held.eval) and not set(texts) & set(held.eval.texts)
    assert set(held.train.texts) < set(texts)
    whole = load_dataset(DatasetSpec(train=str(path), eval=str(path)))
    assert whole.vocabulary_rows() == (whole.train.texts, None)


def test_vocabulary_rows_carry_the_second_text_column(tmp_path):
    rows = [(f"first {i}", f"second {i}", i % 2) for i in range(100)]
    path = write_csv(tmp_path / "pairs.csv", rows, header=("sentence", "other", "label"))
    for eval_file in (str(path), None):
        spec = DatasetSpec(train=str(path), eval=eval_file, text_pair_column="other", max_rows=20)
        ds = load_dataset(spec)
        texts, pairs = ds.vocabulary_rows()
        eval_rows = set() if eval_file else set(zip(ds.eval.texts, ds.eval.pairs, strict=True))
        expected = [(a, b) for a, b, _ in rows if (a, b) not in eval_rows]
        assert list(zip(texts, pairs, strict=True)) == expected
    unsampled = load_dataset(DatasetSpec(train=str(path), text_pair_column="other"))
    assert unsampled.vocabulary_rows() == (unsampled.train.texts, unsampled.train.pairs)


def test_spec_round_trip_and_unknown_keys():
    spec = DatasetSpec(train="x.csv", text_column=0, labels=["neg", "pos"], max_rows=10)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    assert DatasetSpec.from_dict(None) == DatasetSpec()
    with pytest.raises(UserError, match=r"unknown dataset settings 'txt_column', 'lables'"):
        DatasetSpec.from_dict({"train": "x.csv", "txt_column": "a", "lables": []})
    with pytest.raises(UserError, match=r"dataset\.eval_fraction must be a number between 0 and 1"):
        DatasetSpec(eval_fraction=1.5)
    with pytest.raises(UserError, match=r"dataset\.max_length"):
        DatasetSpec.from_dict({"max_length": "long"})


# --------------------------------------------------------------------------- demo, SST-2


def test_demo_set_loads_balanced_without_duplicates():
    assert demo_path("train").is_file() and demo_path("dev").is_file()
    ds = load_dataset(DatasetSpec(train="demo"))
    assert len(ds.train) >= 400 and len(ds.eval) >= 90
    assert ds.label_names == ["0", "1"]
    counts, dev_counts = label_counts(ds.train), label_counts(ds.eval)
    assert counts["0"] == counts["1"] and dev_counts["0"] == dev_counts["1"]
    assert ds.warnings == []
    train_keys = {normalize_text(t) for t in ds.train.texts}
    assert len(train_keys) == len(ds.train)
    assert not train_keys & {normalize_text(t) for t in ds.eval.texts}
    readme = demo_path("train").parent / "README.md"
    assert "demo" in readme.read_text().lower()


@pytest.mark.skipif(not (SST2 / "dev.tsv").exists(), reason="shared SST-2 data not present")
def test_sst2_dev_loads():
    dev = SST2 / "dev.tsv"
    ds = load_dataset(DatasetSpec(train=str(dev), eval=str(dev)))
    assert len(ds.train) == 872 and ds.num_labels == 2 and ds.label_names == ["0", "1"]
    validate_labels(ds, 2)


def test_preview_and_guess_columns(tmp_path):
    path = write_csv(tmp_path / "p.csv", balanced(30), header=("Review", "Sentiment"))
    p = preview(path, n=5)
    assert p.columns == ["Review", "Sentiment"] and len(p.rows) == 5 and p.total_rows == 30
    assert (p.text_column, p.label_column) == ("Review", "Sentiment")
    assert guess_columns(["id", "x"]) == (None, None)
    assert preview(DatasetSpec()).total_rows >= 400
    assert isinstance(encode([], None, 8), Encoded)
