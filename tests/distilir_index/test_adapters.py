"""LangChain and LlamaIndex adapters against the real packages (langchain-core, llama-index-core).

Reference: the wrapped Retriever's own hits, which each adapter must hand over unchanged."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import subprocess
import sys

import pytest
from distilir_index.retriever import Retriever


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, data_dir):
    from distilir_index.bm25 import BM25Index

    ids, texts, metas = [], [], []
    with gzip.open(data_dir / "cranfield" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(itertools.islice(f, 200)):
            row = json.loads(line)
            ids.append(row["_id"])
            texts.append(f"{row['title']} {row['text']}")
            metas.append({"title": row["title"], "n": i})
    index = BM25Index()
    index.add(ids, texts, metadata=metas)
    return index.save(tmp_path_factory.mktemp("adapters") / "bm25")


@pytest.fixture(scope="module")
def retriever(index_dir):
    return Retriever.load(index_dir)


LANGCHAIN = "the langchain extra: pip install 'distilir-index[langchain]'"
LLAMAINDEX = "the llamaindex extra: pip install 'distilir-index[llamaindex]'"
QUERY = "heat transfer in boundary layers at high speed"


def test_langchain_documents_carry_the_hits(retriever):
    pytest.importorskip("langchain_core", reason=LANGCHAIN)
    from distilir_index.adapters import DistilirLangChainRetriever
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    lc = DistilirLangChainRetriever(retriever=retriever, k=4)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke(QUERY)
    hits = retriever.search(QUERY, k=4)
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    assert [d.page_content for d in docs] == [h.text for h in hits]
    assert [d.id for d in docs] == [h.id for h in hits]
    assert [d.metadata["id"] for d in docs] == [h.id for h in hits]
    assert [d.metadata["score"] for d in docs] == [h.score for h in hits]
    assert [d.metadata["title"] for d in docs] == [h.metadata["title"] for h in hits]
    assert [d.id for d in asyncio.run(lc.ainvoke(QUERY))] == [h.id for h in hits]
    assert [[d.id for d in r] for r in lc.batch([QUERY, "wing flutter"])] == [
        [h.id for h in retriever.search(q, k=4)] for q in (QUERY, "wing flutter")
    ]


def test_langchain_filters_from_path_and_validation(index_dir, retriever):
    pytest.importorskip("langchain_core", reason=LANGCHAIN)
    from distilir_index.adapters.langchain import DistilirLangChainRetriever
    from pydantic import ValidationError

    lc = DistilirLangChainRetriever.from_path(index_dir, k=3, filters={"n": {"$lt": 50}})
    docs = lc.invoke(QUERY)
    assert docs and all(d.metadata["n"] < 50 for d in docs)
    assert [d.id for d in docs] == [h.id for h in retriever.search(QUERY, k=3, filters={"n": {"$lt": 50}})]
    with pytest.raises(ValidationError, match="k"):
        DistilirLangChainRetriever(retriever=retriever, k=0)
    # a bare index is wrapped in a Retriever
    assert isinstance(DistilirLangChainRetriever(retriever=retriever.index).retriever, Retriever)


def test_llamaindex_nodes_carry_the_hits(index_dir, retriever):
    pytest.importorskip("llama_index.core", reason=LLAMAINDEX)
    from distilir_index.adapters import DistilirLlamaIndexRetriever
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    li = DistilirLlamaIndexRetriever(retriever, k=5)
    assert isinstance(li, BaseRetriever)
    nodes = li.retrieve(QUERY)
    hits = retriever.search(QUERY, k=5)
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.node.text for n in nodes] == [h.text for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    assert [n.node.metadata["n"] for n in nodes] == [h.metadata["n"] for h in hits]
    assert [n.node.node_id for n in asyncio.run(li.aretrieve(QUERY))] == [h.id for h in hits]
    filtered = DistilirLlamaIndexRetriever.from_path(index_dir, k=3, filters={"n": {"$gte": 100}})
    assert all(n.node.metadata["n"] >= 100 for n in filtered.retrieve(QUERY))
    with pytest.raises(ValueError, match="k must be in"):
        DistilirLlamaIndexRetriever(retriever, k=0)


def test_a_missing_framework_names_the_extra_to_install():
    """Run in a fresh interpreter where the framework cannot be imported (sys.modules entry None)."""
    code = (
        "import sys\n"
        "for mod, name, extra in [('langchain_core', 'langchain', 'langchain'),"
        " ('llama_index', 'llamaindex', 'llamaindex')]:\n"
        "    sys.modules[mod] = None\n"
        "    try:\n"
        "        __import__('distilir_index.adapters.' + name)\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "pip install 'distilir-index[langchain]'" in lines[0]
    assert "pip install 'distilir-index[llamaindex]'" in lines[1]
