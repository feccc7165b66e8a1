"""Audits of a served retriever: what an adversary who can write documents into its corpus can do,
and how to catch it (``distilir audit poison``; :func:`poison_audit`)."""

from distilir.audit.poison import (
    AttackConfig,
    CraftedPassage,
    DefenceConfig,
    craft_passage,
    flag_documents,
    poison_audit,
    query_topics,
)

__all__ = [
    "AttackConfig",
    "CraftedPassage",
    "DefenceConfig",
    "craft_passage",
    "flag_documents",
    "poison_audit",
    "query_topics",
]
