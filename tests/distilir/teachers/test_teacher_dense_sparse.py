"""Bi-encoder and SPLADE teachers: scores equal the embedding library's own similarity, computed by
hand from sentence-transformers' encoders; each distinct text is encoded once per teacher."""

from __future__ import annotations

import numpy as np
import pytest

from distilir.teachers import BiEncoderTeacher, SparseTeacher, TeacherError, build_teacher


@pytest.fixture(scope="module")
def lists(small_lists):
    queries, docs, candidates, _ = small_lists
    qids = list(candidates)[:2]
    # overlapping lists, as candidate lists of different queries are; passages cut to ~60 tokens to
    # keep the test light (the length does not matter for what is tested)
    shared = candidates[qids[0]][:3]
    return [queries[q] for q in qids], [
        [docs[d][:300] for d in dict.fromkeys(shared + candidates[q][:4])] for q in qids
    ]


def test_bi_encoder_equals_cosine_of_sentence_transformers(minilm, lists):
    q_texts, d_lists = lists
    unique = list(dict.fromkeys(d for ds in d_lists for d in ds))
    q_ref = minilm.encode_query(q_texts, normalize_embeddings=False)
    d_ref = dict(zip(unique, minilm.encode_document(unique, normalize_embeddings=False), strict=True))

    teacher = BiEncoderTeacher(minilm, batch_size=8)
    assert teacher.similarity == "cosine" and teacher.score_type == "similarity"
    got = teacher.score_many(q_texts, d_lists)
    for q, ds, scores in zip(q_ref, d_lists, got, strict=True):
        d = np.stack([d_ref[t] for t in ds])
        cos = d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))
        np.testing.assert_allclose(scores, cos, atol=1e-5)
    assert teacher.doc_cache.misses == len(unique) < sum(len(ds) for ds in d_lists)
    teacher.score_many(q_texts, d_lists)
    assert teacher.doc_cache.misses == len(unique) and teacher.query_cache.misses == len(q_texts)

    dot = BiEncoderTeacher(minilm, similarity="dot")
    raw = np.stack([d_ref[t] for t in d_lists[0]]) @ q_ref[0]
    np.testing.assert_allclose(dot.score(q_texts[0], d_lists[0]), raw, rtol=1e-5, atol=1e-6)
    assert dot.fingerprint != teacher.fingerprint
    with pytest.raises(TeacherError, match="similarity"):
        BiEncoderTeacher(minilm, similarity="l2")


def test_bi_encoder_by_packaged_name_records_the_file_hash(minilm_path, lists):
    from distilir_index.models import fingerprint_folder

    teacher = build_teacher("bi-encoder:all-MiniLM-L6-v2?batch_size=16")
    assert isinstance(teacher, BiEncoderTeacher) and teacher.batch_size == 16
    cfg = teacher.get_config_dict()
    assert cfg["model"]["fingerprint"] == fingerprint_folder(minilm_path) and cfg["max_length"] == 256
    assert teacher.name == "bi-encoder:all-MiniLM-L6-v2"


def test_splade_equals_library_pooling_and_dot_product(splade_path, lists):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    q_texts, d_lists = lists
    teacher = build_teacher("splade:splade-tiny?batch_size=8")
    assert isinstance(teacher, SparseTeacher) and teacher.score_type == "similarity"
    # the reference: the library's own SpladePooling (relu + log1p on every token, then max)
    stock = SparseEncoder(
        modules=[
            Transformer(splade_path, transformer_task="fill-mask"),
            SpladePooling(pooling_strategy="max"),
        ],
        device="cpu",
    )
    assert type(stock[1]) is SpladePooling
    ours = teacher.model.encode_document(d_lists[0], convert_to_tensor=True, convert_to_sparse_tensor=False)
    ref = stock.encode_document(d_lists[0], convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert len(ours) == len(d_lists[0])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-6)
    assert (ref > 0).sum(dim=1).min() > 5  # real sparse vectors, not empty

    got = teacher.score_many(q_texts, d_lists)
    unique = list(dict.fromkeys(d for ds in d_lists for d in ds))
    qv = stock.encode_query(q_texts, convert_to_tensor=True, convert_to_sparse_tensor=False).numpy()
    dv = dict(
        zip(
            unique,
            stock.encode_document(unique, convert_to_tensor=True, convert_to_sparse_tensor=False).numpy(),
            strict=True,
        )
    )
    for q, ds, scores in zip(qv, d_lists, got, strict=True):
        np.testing.assert_allclose(scores, np.stack([dv[t] for t in ds]) @ q, rtol=1e-5, atol=1e-5)
    assert teacher.doc_cache.misses == len({d for ds in d_lists for d in ds})
    cfg = teacher.get_config_dict()
    assert cfg["kind"] == "splade" and cfg["model"]["fingerprint"].startswith("sha256:")

    # a caller's SparseEncoder is used as is: its modules are not swapped
    same = SparseTeacher(stock)
    assert type(stock[1]) is SpladePooling
    np.testing.assert_allclose(same.score(q_texts[0], d_lists[0]), got[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec", ["bi-encoder:all-MiniLM-L6-v2", "splade:splade-tiny"])
def test_document_cache_on_disk_is_reused_by_a_new_teacher(spec, lists, tmp_path):
    """With cache_dir, a second teacher (a new process in practice) encodes no document again and
    gives the same scores; a torn part file is skipped with a warning, never deleted."""
    q_texts, d_lists = lists
    unique = {d for ds in d_lists for d in ds}
    first = build_teacher(f"{spec}?batch_size=8&cache_dir={tmp_path}")
    expected = first.score_many(q_texts, d_lists)
    folder = first.doc_cache.directory
    assert folder.parent == tmp_path
    parts = list(folder.glob("part-*.npz"))
    assert len(parts) == 1 and (folder / "cache.json").is_file()
    assert first.fingerprint == build_teacher(f"{spec}?batch_size=8").fingerprint  # runtime only

    second = build_teacher(f"{spec}?batch_size=8&cache_dir={tmp_path}")
    got = second.score_many(q_texts, d_lists)
    assert second.doc_cache.loaded == len(unique) and second.doc_cache.misses == 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)

    torn = folder / "part-torn.npz"
    torn.write_bytes(parts[0].read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable embedding-cache part"):
        third = build_teacher(f"{spec}?batch_size=8&cache_dir={tmp_path}")
        third.score_many(q_texts[:1], d_lists[:1])
    assert torn.exists() and third.doc_cache.misses == 0


def test_teacher_reads_the_document_embeddings_an_index_build_wrote(minilm_path, lists, tmp_path):
    """One cache per model on a machine: a normalised all-MiniLM-L6-v2 index build and the cosine
    bi-encoder teacher of the same weights share one folder, so the teacher encodes no document."""
    from distilir_index.encoders import DenseEncoder

    q_texts, d_lists = lists
    unique = sorted({d for ds in d_lists for d in ds})
    encoder = DenseEncoder(minilm_path, normalize=True, cache_dir=tmp_path)
    encoder.encode_documents(unique)
    teacher = build_teacher(f"bi-encoder:all-MiniLM-L6-v2?batch_size=8&cache_dir={tmp_path}")
    got = teacher.score_many(q_texts, d_lists)
    assert teacher.doc_cache.directory == encoder.document_cache.directory
    assert teacher.doc_cache.misses == 0 and teacher.doc_cache.loaded == len(unique)
    fresh = build_teacher("bi-encoder:all-MiniLM-L6-v2?batch_size=8&cache_dir=off")
    assert fresh.doc_cache.directory is None
    for a, b in zip(got, fresh.score_many(q_texts, d_lists), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bi_encoder_onnx_backend_gives_the_same_scores(minilm, lists, tmp_path, monkeypatch):
    """The transformer exported to ONNX Runtime, the model's own pooling + normalisation after it:
    the scores of the torch path within float rounding; the backend is not part of the fingerprint."""
    monkeypatch.setenv("DISTILIR_CACHE", str(tmp_path))
    q_texts, d_lists = lists
    torch_teacher = BiEncoderTeacher(minilm, batch_size=3)
    onnx_teacher = BiEncoderTeacher(minilm, batch_size=3, backend="onnx")
    expected = torch_teacher.score_many(q_texts, d_lists)
    got = onnx_teacher.score_many(q_texts, d_lists)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert onnx_teacher.fingerprint == torch_teacher.fingerprint
    assert len(list((tmp_path / "onnx").glob("encoder-*.onnx"))) == 1
    with pytest.raises(TeacherError, match="backend must be"):
        BiEncoderTeacher(minilm, backend="openvino")


def test_bi_encoder_teacher_takes_document_embeddings_from_its_own_index(tmp_path, minilm_path):
    """The teacher's document cache seeded from a dense index built by the same model gives the same
    scores as encoding the documents itself, and an index of other settings is refused."""
    from distilir_index.dense import DenseIndex
    from distilir_index.encoders import DenseEncoder

    from distilir.teachers import BiEncoderTeacher, TeacherError

    docs = {
        "a": "Aspirin reduces the risk of heart attacks.",
        "b": "Cats sleep most of the day.",
        "c": "Tea.",
    }
    index = DenseIndex(DenseEncoder(minilm_path))
    index.add(list(docs), list(docs.values()))
    index.save(tmp_path / "idx")
    seeded = BiEncoderTeacher(minilm_path)
    assert seeded.seed_from_index(tmp_path / "idx", docs) == 3
    plain = BiEncoderTeacher(minilm_path)
    got = seeded.score("does aspirin help the heart?", list(docs.values()))
    assert seeded.doc_cache.misses == 0  # nothing encoded
    np.testing.assert_allclose(
        got, plain.score("does aspirin help the heart?", list(docs.values())), atol=1e-5
    )
    short = DenseIndex(DenseEncoder(minilm_path, max_length=64))
    short.add(list(docs), list(docs.values()))
    short.save(tmp_path / "short")
    with pytest.raises(TeacherError, match="max_length"):
        BiEncoderTeacher(minilm_path).seed_from_index(tmp_path / "short", docs)
