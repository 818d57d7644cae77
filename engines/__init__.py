"""Inference runtimes behind one small interface (spec + ``infer``); imports neither agent nor export."""
