"""Provenance: every table jsae writes records what it was computed from (Parquet key-value
metadata, a ``.csv.json`` sidecar for CSV), and ``jsae ablate --from FILE`` re-runs it. The
reference is the first run's own table: the re-run must write the same table and the same
record; the record is read back with pyarrow itself."""

import hashlib
import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

import jsae
from jsae.ablation import ablate
from jsae.cli import main
from jsae.loading import save_source
from jsae.provenance import PROVENANCE_KEY, Provenance, read_provenance, sidecar
from jsae.table import table_bytes
from tests.helpers import tiny_model, tiny_pairs

PROMPT = "The quick brown fox jumps over the lazy dog. Ünïcödé too."


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = tiny_model()
    return save_source(tmp_path_factory.mktemp("src"), model, tiny_pairs(model))


def run(source_dir, out, *flags):
    argv = ["ablate", "--no-progress", "--bootstrap", "0", "--output", str(out), *flags]
    assert main(argv) == 0


def read(path):
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_written_table_records_its_settings_and_from_reruns_it(source_dir, tmp_path, suffix):
    first = tmp_path / f"first{suffix}"
    flags = ["--source", str(source_dir), "--layer", "1", "--pair", "plain", "--eps", "0.05"]
    run(source_dir, first, *flags, "--scale", "0.5", "--max-tokens", "6", "--prompt", PROMPT)
    record = read_provenance(first)
    expected_hash = hashlib.sha256(
        json.dumps(PROMPT, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    assert (record.source, record.model, record.layer, record.kind) == (
        str(source_dir),
        None,
        1,
        "plain",
    )
    assert (record.eps, record.mode, record.step, record.include_bos) == (0.05, "scale", 0.5, False)
    assert (record.prompt, record.prompt_sha256, record.max_ablated) == (PROMPT, expected_hash, 6)
    assert record.jsae_version == jsae.__version__ and record.model_name
    if suffix == ".parquet":  # pyarrow reads the key-value metadata on its own
        raw = pq.read_schema(first).metadata[PROVENANCE_KEY.encode()]
        assert json.loads(raw)["prompt"] == PROMPT
    else:
        assert sidecar(first).name == "first.csv.json" and sidecar(first).is_file()
    again = tmp_path / f"again{suffix}"
    run(source_dir, again, "--from", str(first))
    pd.testing.assert_frame_equal(read(again), read(first))
    assert read_provenance(again) == record


def test_flags_beside_from_win(source_dir, tmp_path):
    first = tmp_path / "first.parquet"
    run(source_dir, first, "--source", str(source_dir), "--mode", "zero", "--prompt", PROMPT)
    changed = tmp_path / "changed.parquet"
    run(source_dir, changed, "--from", str(first), "--eps", "0.2")
    record = read_provenance(changed)
    assert record.eps == 0.2 and record.mode == "zero" and record.step is None
    table = pd.read_parquet(changed)
    assert (table["important"] == (table["jacobian"].abs() > 0.2)).all()
    base = pd.read_parquet(first)
    pd.testing.assert_frame_equal(table.drop(columns="important"), base.drop(columns="important"))


def test_token_ids_round_trip_through_from(source_dir, tmp_path):
    from jsae.loading import load_source

    source = load_source(source_dir)
    ids = source.model.to_tokens(PROMPT)[0]
    result = ablate(source.model, source.pair(0), ids)
    first = tmp_path / "ids.parquet"
    jsae.write_table(
        result.table, first, "parquet", result.provenance.replace(source=str(source_dir))
    )
    assert read_provenance(first).prompt == ids.tolist()
    again = tmp_path / "again.parquet"
    run(source_dir, again, "--from", str(first))
    pd.testing.assert_frame_equal(pd.read_parquet(again), pd.read_parquet(first))


def test_a_download_records_its_provenance(source_dir):
    from jsae.loading import load_source

    source = load_source(source_dir)
    result = ablate(source.model, source.pair(0), PROMPT).with_eps(0.03)
    assert result.provenance.eps == 0.03  # re-splitting keeps the record in step
    data = table_bytes(result.table, "parquet", result.provenance.replace(source="demo"))
    raw = pq.read_table(io.BytesIO(data)).schema.metadata[PROVENANCE_KEY.encode()]
    assert Provenance.from_json(raw.decode(), "download") == result.provenance.replace(
        source="demo"
    )


def test_from_a_file_without_provenance_is_one_clear_error(tmp_path, capsys):
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    assert main(["ablate", "--from", str(plain), "--no-progress"]) == 2
    assert "records no provenance" in capsys.readouterr().err
    bare = tmp_path / "bare.csv"
    bare.write_text("a\n1\n")
    assert main(["ablate", "--from", str(bare), "--no-progress"]) == 2
    assert "sidecar bare.csv.json is missing" in capsys.readouterr().err


def test_a_tampered_prompt_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    record = json.loads(
        Provenance(1, "jsae", 0.01, "unit", 1.0, False, "hi", "0" * 64, "m").to_json()
    )
    sidecar(path).write_text(json.dumps(record))
    with pytest.raises(jsae.InputError, match="does not match its hash"):
        read_provenance(path)
