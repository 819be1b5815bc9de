//! HTTP exports: paging and deltas.
