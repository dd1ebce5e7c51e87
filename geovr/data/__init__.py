"""Data: sample records, batching, the synthetic world and video QA datasets."""

from geovr.data.collate import SAMPLE_KEYS, collate

__all__ = ["collate", "SAMPLE_KEYS"]
